"""A catalog install that runs off the caller's thread: the panels' Install button and its Cancel.

:class:`InstallJob` runs :func:`.install.install_model` in a worker thread with its own
:class:`~segmentai_core.progress.CancelToken`. A GUI timer (Slicer's panel) or an asyncio task
(the web app) reads :attr:`InstallJob.progress` and :attr:`InstallJob.done`; :meth:`InstallJob.cancel`
stops the download at its next chunk (the ``.part`` file stays, so the next Install resumes it) or
the unpacking at its next member, and nothing is installed. The worker touches no GUI and no scene.
"""

from __future__ import annotations

import threading
import traceback
from typing import Any, List, Optional

from ..errors import Cancelled, SegmentAIError
from ..progress import Progress, WorkerJob

__all__ = ["InstallJob", "start_install"]


class InstallJob(WorkerJob):
    """One install of the catalog model ``model_id`` into ``registry``.

    ``state`` is ``running``, ``succeeded`` (``packages`` holds the installed packages), ``cancelled``
    (nothing is installed) or ``failed`` (``error`` holds one readable line); ``notes`` are what could
    not be verified. ``progress`` messages carry bytes and rate while downloading.
    """

    def __init__(self, model_id: str, registry: Any = None, catalog: Any = None, timeout_s: float = 30.0) -> None:
        super().__init__(f"Installing {model_id}: starting")
        self.model_id = model_id
        self.registry = registry
        self.catalog = catalog
        self.timeout_s = timeout_s
        self.notes: List[str] = []
        self.packages: List[Any] = []
        self.entry: Any = None  # the catalog entry, once installed

    @property
    def package_ids(self) -> List[str]:
        """``id@version`` of every installed package (empty unless succeeded)."""
        return [p.full_id for p in self.packages]

    @property
    def choice(self) -> Optional[str]:
        """What a model selector should select now: a multi-part model's catalog id (its parts run as one),
        else the package's ``id@version``; None unless succeeded."""
        if not self.packages:
            return None
        return self.entry.id if self.entry is not None and self.entry.multi_part else self.packages[0].full_id

    def run(self) -> None:
        """The worker's body (also callable in the caller's thread): install, record the outcome."""
        from .install import install_model

        try:
            result = install_model(self.model_id, registry=self.registry, catalog=self.catalog,
                                   progress=Progress(self._record, self.cancel_token), say=self.notes.append,
                                   timeout_s=self.timeout_s)
            self.packages, self.entry = list(result.packages), result.entry
            self._record(1.0, f"Installed {self.model_id}")
            self.state = "succeeded"
        except Cancelled:
            self.error = f"Install of {self.model_id} cancelled; nothing was installed."
            self.state = "cancelled"
        except SegmentAIError as error:
            self.error = str(error)
            self.state = "failed"
        except Exception as error:  # noqa: BLE001 - a bug: the traceback to the log, one line to the user
            traceback.print_exc()
            self.error = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error) else ''}"
            self.state = "failed"


def start_install(model_id: str, registry: Any = None, catalog: Any = None, timeout_s: float = 30.0,
                  thread: bool = True) -> InstallJob:
    """Start installing the catalog model ``model_id``; returns the running job (done already if not ``thread``)."""
    job = InstallJob(model_id, registry, catalog, timeout_s)
    if thread:
        job.thread = threading.Thread(target=job.run, name=f"SegmentAI install {model_id}", daemon=True)
        job.thread.start()
    else:
        job.run()
    return job
