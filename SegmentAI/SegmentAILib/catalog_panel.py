"""The panel's "Model catalog" section: the public models SegmentAI can download, Install and Cancel.

:class:`CatalogPanel` fills ``catalogComboBox`` with one line per catalog model (id, modality,
classes, size, licence, installed?) and ``catalogCardText`` with the chosen one's card. Install
asks first (the licence and size are in the question), then starts the Logic's install job, a
worker thread; the Widget's timer calls :meth:`CatalogPanel.poll`, which shows the bytes and rate
and, once installed, hands the model to select to ``onInstalled`` (the Widget refreshes the model
selector; a multi-part model is one choice). Cancel stops the download at its next chunk; nothing
is installed. Like the Widget, this file imports no Qt: it runs on slicer-core in
``Testing/Python/test_slicer_widget.py``.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

from segmentai_core.catalog.listing import install_question

try:
    from slicer.i18n import tr as _
except ImportError:  # slicer-core has no translations
    def _(text: str) -> str:
        return text

__all__ = ["CatalogPanel"]


class CatalogPanel:
    """The catalog section's handlers over ``ui``; ``logic`` is the module's Logic facade."""

    def __init__(self, ui, logic, gui, timer, onInstalled: Callable[[List[str]], None]) -> None:
        self.ui, self.logic, self.gui, self.timer, self.onInstalled = ui, logic, gui, timer, onInstalled
        self.rows: List[Dict[str, Any]] = []
        self.job = None
        self.ui.catalogComboBox.connect("currentIndexChanged(int)", self.onCatalogChanged)
        self.ui.installButton.connect("clicked(bool)", self.onInstall)
        self.ui.installCancelButton.connect("clicked(bool)", self.onInstallCancel)

    def refresh(self) -> None:
        """Read the catalog again (after an install or removal), keeping the chosen model."""
        wanted = self.selected()
        self.ui.catalogComboBox.clear()
        self.rows = []
        if self.logic.missingDependencies():
            self.ui.catalogCardText.setPlainText(_("The catalog is shown once SegmentAI's Python packages are "
                                                   "installed (press Segment once)."))
            self.updateButtons()
            return
        with self.gui.tryWithErrorDisplay(_("Failed to read the model catalog.")):
            self.rows = self.logic.catalogModels()
        for row in self.rows:
            self.ui.catalogComboBox.addItem(row["summary"], row["id"])
        index = self.ui.catalogComboBox.findData(wanted["id"]) if wanted else -1
        self.ui.catalogComboBox.setCurrentIndex(max(index, 0) if self.rows else -1)
        self.updateButtons()

    def selected(self) -> Optional[Dict[str, Any]]:
        index = self.ui.catalogComboBox.currentIndex
        return self.rows[index] if 0 <= index < len(self.rows) else None

    def onCatalogChanged(self, index: int) -> None:
        row = self.rows[index] if 0 <= index < len(self.rows) else None
        self.ui.catalogCardText.setPlainText(row["card"] if row else "")
        self.updateButtons()

    def updateButtons(self) -> None:
        row, running = self.selected(), self.job is not None
        self.ui.installButton.enabled = bool(row and row["installable"]) and not running
        self.ui.installCancelButton.enabled = running
        self.ui.catalogComboBox.enabled = not running

    def onInstall(self) -> None:
        row = self.selected()
        if row is None or self.job is not None:
            return
        if not row["installable"]:
            self.ui.installStatusLabel.text = row["installed_text"]
            return
        if not self.gui.confirm(install_question(row)) or not self.ensurePackages(row):
            return
        with self.gui.tryWithErrorDisplay(_("Failed to start the install.")):
            self.job = self.logic.startInstall(row["id"])
            self.ui.installProgressBar.value = 0
            self.ui.installStatusLabel.text = _("Installing {model}...").format(model=row["id"])
            self.timer.start()
        self.updateButtons()

    def ensurePackages(self, row: Dict[str, Any]) -> bool:
        """The Python packages this model's importer needs (nnU-Net's networks), installed if the user agrees."""
        missing = self.logic.missingForModel(row)
        if not missing:
            return True
        question = _("{model} needs these Python packages: {names}. Install them now?").format(
            model=row["id"], names=", ".join(missing))
        if not self.gui.confirm(question):
            return False
        with self.gui.tryWithErrorDisplay(_("Failed to install the Python packages.")):
            self.logic.installPackages(missing)
        return not self.logic.missingForModel(row)

    def poll(self) -> bool:
        """Show the job's progress; at the end its outcome. True once no install runs."""
        job = self.job
        if job is None:
            return True
        fraction, message = job.progress
        self.ui.installProgressBar.value = round(100 * fraction)
        self.ui.installStatusLabel.text = message
        if not job.done:
            return False
        self.job = None
        if job.state == "succeeded":
            notes = "".join(f"\n{note}" for note in job.notes)
            self.ui.installStatusLabel.text = _("Installed {ids}; it is in the model list.").format(
                ids=", ".join(job.package_ids)) + notes
            self.onInstalled([job.choice])
        else:
            self.ui.installProgressBar.value = 0
            self.ui.installStatusLabel.text = job.error
            if job.state == "failed":
                self.gui.error(job.error)
        self.refresh()
        return True

    def onInstallCancel(self) -> None:
        if self.job is not None:  # the next poll reports it
            self.job.cancel()
            self.ui.installStatusLabel.text = _("Cancelling the install...")
