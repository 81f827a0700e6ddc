"""One persistent thread for interactive inference.

PyTorch keeps some caches per thread (cuDNN plans, for one: SlicerNNInteractive measured about
1.2 s per interaction from fresh threads against 0.11 s from one long-lived thread), so every
prediction of a session runs on the same thread, which lives as long as the session.
"""

from __future__ import annotations

import concurrent.futures
from typing import Any, Callable, Optional

__all__ = ["InteractionWorker"]


class InteractionWorker:
    """A single long-lived worker thread; :meth:`call` runs a function there and waits for it."""

    def __init__(self, threads: Optional[int] = None, name: str = "segmentai-interaction") -> None:
        self._threads = threads
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=name, initializer=self._initialise)

    def _initialise(self) -> None:
        if self._threads:
            import torch

            torch.set_num_threads(int(self._threads))

    def submit(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> "concurrent.futures.Future":
        """Queue ``function(*args, **kwargs)`` on the worker thread; returns its future."""
        return self._executor.submit(function, *args, **kwargs)

    def call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``function`` on the worker thread and return its result (its exception is re-raised)."""
        return self.submit(function, *args, **kwargs).result()

    def thread_ident(self) -> int:
        """Identifier of the worker thread (the same for the life of the worker)."""
        import threading

        return self.call(threading.get_ident)

    def close(self) -> None:
        """Stop the thread after the queued work."""
        self._executor.shutdown(wait=True)

    def __enter__(self) -> "InteractionWorker":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
