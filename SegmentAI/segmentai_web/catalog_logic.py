"""The web panel's model catalog: list the public models, install one with progress and Cancel.

Security: the client names a model by its catalog **id** only, and only ids of the server's own
catalog (``Resources/Catalog/catalog.json``, or ``$SEGMENTAI_CATALOG`` set when the server started)
are installed; an unknown id, a path or a URL is refused with one line and nothing is opened or
fetched. The URLs, sizes and hashes come from the server's catalog, never from the client, and the
rows the page shows (``sai_catalog``) are never read back. The install runs in a worker thread
(:class:`segmentai_core.catalog.jobs.InstallJob`), watched by an asyncio task; once installed, the
package joins the model list and is selected.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Dict, List, Optional

from segmentai_core.catalog.jobs import InstallJob, start_install
from segmentai_core.errors import InputError, SegmentAIError

from .prompt_logic import action

__all__ = ["CatalogLogic", "INSTALL_TRIGGER", "INSTALL_CANCEL_TRIGGER"]

log = logging.getLogger("segmentai.web")
POLL_S = 0.25
INSTALL_TRIGGER = "sai_install"
INSTALL_CANCEL_TRIGGER = "sai_install_cancel"
SHOWN = ("id", "title", "task", "modality", "classes", "size_text", "license_text", "installed_text", "installable",
         "card")


class CatalogLogic:
    """The catalog part of the panel; ``notify`` and ``on_installed(ids)`` are the panel's."""

    def __init__(self, server, registry, notify: Callable[[str, str], None],
                 on_installed: Callable[[List[str]], None]) -> None:
        self.server, self.state, self.registry = server, server.state, registry
        self.notify, self.on_installed = notify, on_installed
        self.job: Optional[InstallJob] = None
        self.last: Optional[Dict[str, Any]] = None  # the latest finished install, once the panel shows it
        self._ids: set = set()  # the server's catalog ids: the only ones a client may install
        self.state.update({"sai_catalog": [], "sai_installing": "", "sai_install_progress": 0.0,
                           "sai_install_text": ""})
        server.controller.trigger(INSTALL_TRIGGER)(self.install)
        server.controller.trigger(INSTALL_CANCEL_TRIGGER)(self.cancel)
        self.refresh()

    def refresh(self) -> None:
        """Read the catalog and what is installed; a broken catalog is one line, not a dead panel."""
        from segmentai_core.catalog.listing import catalog_rows

        try:
            rows = catalog_rows(self.registry)
        except SegmentAIError as error:
            rows = []
            self.state.sai_install_text = f"model catalog unavailable: {error}"
        self._ids = {row["id"] for row in rows}
        self.state.sai_catalog = [{key: row[key] for key in SHOWN} for row in rows]

    def listed_id(self, value: Any) -> str:
        """``value`` if it is an id of the server's catalog (never a path or a URL)."""
        if not isinstance(value, str) or value not in self._ids:
            raise InputError("choose a model from the catalog")
        return value

    @action
    def install(self, model_id: Any = None) -> None:
        model_id = self.listed_id(model_id)
        if self.job is not None and not self.job.done:
            raise InputError(f"{self.job.model_id} is being installed: wait for it (or cancel it)")
        self.job = start_install(model_id, registry=self.registry)
        self.state.sai_installing, self.state.sai_install_progress = model_id, 0.0
        self.state.sai_install_text = f"Installing {model_id}: starting"
        asyncio.get_event_loop().create_task(self._watch(self.job))

    async def _watch(self, job: InstallJob) -> None:
        while not job.done:
            fraction, message = job.progress
            with self.state:
                self.state.sai_install_progress, self.state.sai_install_text = round(100 * fraction, 1), message
            await asyncio.sleep(POLL_S)
        with self.state:
            self.state.sai_installing, self.state.sai_install_progress = "", 0.0
            self.refresh()
            if job.state == "succeeded":
                text = f"Installed {', '.join(job.package_ids)}; it is in the model list"
                self.state.sai_install_text = text + "".join(f". Note: {note}" for note in job.notes)
                self.on_installed([job.choice])
                self.notify(text, "success")
            else:
                self.state.sai_install_text = job.error
                self.notify(job.error, "warning" if job.state == "cancelled" else "error")
        self.last = {"id": job.model_id, "state": job.state, "error": job.error, "packages": job.package_ids}

    def cancel(self) -> None:
        if self.job is not None and not self.job.done:
            self.job.cancel()
            self.state.sai_install_text = "Cancelling the install..."

    def status(self) -> Dict[str, Any]:
        """Server-side facts for ``/segmentai/status``: the running install and each model's state."""
        job = self.job
        return {"installing": job.model_id if job is not None and not job.done else "", "last_install": self.last,
                "catalog": {row["id"]: row["installed_text"] for row in self.state.sai_catalog}}
