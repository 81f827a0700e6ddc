"""Progress reporting and cooperative cancellation shared by every long-running job.

A job receives one :class:`Progress`. It reports fractions in ``[0, 1]`` of *its own* work and
hands sub-ranges to the stages it calls (:meth:`Progress.span`), so nested stages never need to
know where they sit in the whole pipeline. Every report also checks the :class:`CancelToken`,
which turns a Cancel button into a :class:`~segmentai_core.errors.Cancelled` exception raised
at the next checkpoint, before anything is written.
"""

from __future__ import annotations

import threading
from typing import Callable, Optional, Tuple

from .errors import Cancelled

__all__ = ["ProgressCallback", "CancelToken", "Progress", "WorkerJob"]

ProgressCallback = Callable[[float, str], None]
"""Receives the overall fraction done (0..1) and a short message."""


class CancelToken:
    """Thread-safe flag that a UI sets and a worker polls."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        """Ask the job to stop at its next checkpoint."""
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled("Cancelled by the user; nothing was written.")


class Progress:
    """Maps a stage's local fraction onto the overall range and checks for cancellation."""

    def __init__(
        self,
        callback: Optional[ProgressCallback] = None,
        cancel: Optional[CancelToken] = None,
        start: float = 0.0,
        end: float = 1.0,
    ) -> None:
        self.callback = callback
        self.cancel_token = cancel or CancelToken()
        self.start = start
        self.end = end

    def update(self, fraction: float, message: str = "") -> None:
        """Report ``fraction`` (0..1) of this stage done; raises ``Cancelled`` if asked to stop."""
        self.cancel_token.raise_if_cancelled()
        if self.callback is not None:
            fraction = min(max(fraction, 0.0), 1.0)
            self.callback(self.start + (self.end - self.start) * fraction, message)

    def check(self) -> None:
        """A cancellation checkpoint that reports nothing."""
        self.cancel_token.raise_if_cancelled()

    def span(self, start: float, end: float) -> "Progress":
        """A child reporter covering ``[start, end]`` of this stage."""
        width = self.end - self.start
        return Progress(self.callback, self.cancel_token, self.start + width * start, self.start + width * end)


class WorkerJob:
    """What every job run in a worker thread shares (a segmentation, a catalog install).

    ``state`` is ``running``, then ``succeeded``, ``cancelled`` or ``failed`` (``error`` holds one
    readable line). The worker records its progress with :meth:`_record`; a GUI timer or an asyncio
    task on the caller's side reads :attr:`progress` and :attr:`done`, and :meth:`cancel` asks the
    worker to stop at its next checkpoint (``cancel_token``).
    """

    def __init__(self, first_message: str) -> None:
        self.cancel_token = CancelToken()
        self.state = "running"
        self.error = ""
        self.thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()
        self._progress: Tuple[float, str] = (0.0, first_message)

    @property
    def done(self) -> bool:
        return self.state != "running"

    @property
    def progress(self) -> Tuple[float, str]:
        """The latest (fraction 0..1, message)."""
        with self._lock:
            return self._progress

    def _record(self, fraction: float, message: str) -> None:
        with self._lock:
            self._progress = (fraction, message)

    def cancel(self) -> None:
        """Ask the worker to stop at its next checkpoint."""
        self.cancel_token.cancel()

    def join(self, timeout: Optional[float] = None) -> bool:
        """Wait for the worker; True once the job is done."""
        if self.thread is not None:
            self.thread.join(timeout)
        return self.done
