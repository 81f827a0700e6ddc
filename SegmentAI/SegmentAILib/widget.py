"""The SegmentAI panel's handlers: what each button, selector and timer tick does.

:class:`Widget` drives the panel's widgets (``ui``, the ``.ui`` file's children) and talks to one
facade, the module's Logic (``SegmentAILogic``, injected: ``Widget(ui, logic=None)`` makes the real one),
and to the application through ``gui`` (dialogs, timers, pictures: :class:`SlicerGui`). Neither Qt nor
the Slicer application is imported here, so a test drives the handlers on slicer-core with a fake ui,
a fake Logic and a fake gui (``Testing/Python/test_slicer_widget.py``).
"""

from __future__ import annotations

import pathlib
from typing import Callable, Optional

import slicer
import vtk
from segmentai_mrml.prompt_modes import PromptMode
from slicer.util import VTKObservationMixin

from .catalog_panel import CatalogPanel

try:
    from slicer.i18n import tr as _
except ImportError:  # slicer-core has no translations
    def _(text: str) -> str:
        return text

__all__ = ["SlicerGui", "Widget"]


class SlicerGui:
    """What the panel needs from the Slicer application: dialogs, a timer, pictures, the Segment Editor."""

    @staticmethod
    def tryWithErrorDisplay(message: str):
        return slicer.util.tryWithErrorDisplay(message, waitCursor=True)

    @staticmethod
    def confirm(question: str) -> bool:
        return slicer.util.confirmOkCancelDisplay(question)

    @staticmethod
    def error(text: str) -> None:
        slicer.util.errorDisplay(text, windowTitle=_("SegmentAI"))

    @staticmethod
    def timer(intervalMs: int, callback: Callable[[], None]):
        import qt

        timer = qt.QTimer()
        timer.setInterval(intervalMs)
        timer.timeout.connect(callback)
        return timer

    @staticmethod
    def pixmap(path: pathlib.Path):
        import qt

        return qt.QPixmap(str(path))

    @staticmethod
    def openSegmentEditor(segmentationNode, volumeNode) -> None:
        slicer.util.selectModule("SegmentEditor")
        editor = slicer.modules.segmenteditor.widgetRepresentation().self().editor
        editor.setSegmentationNode(segmentationNode)
        editor.setSourceVolumeNode(volumeNode)


class Widget(VTKObservationMixin):
    """The panel's behaviour over ``ui``; ``logic`` is the module's Logic (default: a new ``SegmentAILogic``)."""

    def __init__(self, ui, logic=None, gui=None, scene=None, isEntered: Optional[Callable[[], bool]] = None) -> None:
        VTKObservationMixin.__init__(self)
        if logic is None:
            from SegmentAI import SegmentAILogic

            logic = SegmentAILogic()
        self.ui, self.logic, self.gui = ui, logic, gui or SlicerGui()
        self.scene = scene if scene is not None else slicer.mrmlScene
        self.isEntered = isEntered or (lambda: True)
        self._parameterNode = self._parameterNodeGuiTag = None
        self._job = self._finetune = None  # segmentation and fine-tuning jobs, polled by the timer
        self._timer = self.gui.timer(100, self.onPoll)
        self._modes = {PromptMode.POSITIVE: self.ui.positivePointButton,
                       PromptMode.NEGATIVE: self.ui.negativePointButton, PromptMode.BOX: self.ui.boxButton,
                       PromptMode.SCRIBBLE_POSITIVE: self.ui.positiveScribbleButton,
                       PromptMode.SCRIBBLE_NEGATIVE: self.ui.negativeScribbleButton}
        self.addObserver(self.scene, self.scene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(self.scene, self.scene.EndCloseEvent, self.onSceneEndClose)
        self.ui.segmentButton.connect("clicked(bool)", self.onSegmentButton)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancelButton)
        self.ui.segmentEditorButton.connect("clicked(bool)", self.onSegmentEditorButton)
        self.ui.modelComboBox.connect("currentIndexChanged(int)", self.onModelChanged)
        self.ui.segmentSelector.connect("currentSegmentChanged(QString)", self.updateButtons)
        for mode, button in self._modes.items():
            button.toggled.connect(lambda checked, mode=mode: self.onPlaceToggled(mode, checked))
        self.ui.lockSegmentButton.toggled.connect(self.onLockToggled)
        self.ui.undoButton.connect("clicked(bool)", lambda: self.onUndoRedo(redo=False))
        self.ui.redoButton.connect("clicked(bool)", lambda: self.onUndoRedo(redo=True))
        self.ui.saveCaseButton.connect("clicked(bool)", self.onSaveCase)
        self.ui.finetuneButton.connect("clicked(bool)", self.onFinetune)
        self.ui.finetuneCancelButton.connect("clicked(bool)", self.onFinetuneCancel)
        self.catalog = CatalogPanel(self.ui, self.logic, self.gui, self._timer, self.onModelsInstalled)
        self.initializeParameterNode()
        self.refreshModels()
        self.catalog.refresh()

    # --- life cycle --------------------------------------------------------------------------------

    def cleanup(self) -> None:
        self.onCancelButton()
        self.onFinetuneCancel()
        self.catalog.onInstallCancel()
        self.logic.closeRefinement()
        self.setParameterNode(None)
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        self.setParameterNode(None)

    def onSceneStartClose(self, caller=None, event=None) -> None:
        self.onCancelButton()
        for button in self._modes.values():
            button.checked = False
        self.logic.closeRefinement()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller=None, event=None) -> None:
        if self.isEntered():
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            firstVolume = self.scene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolume:
                self._parameterNode.inputVolume = firstVolume
        if str(self._parameterNode.datasetDir) in ("", "."):
            self._parameterNode.datasetDir = pathlib.Path(self.logic.defaultDatasetDir())

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateButtons)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateButtons)
            self.updateButtons()

    def updateButtons(self, caller=None, event=None) -> None:
        p, running = self._parameterNode, self._job is not None
        ready = bool(p and p.inputVolume)
        self.ui.segmentButton.enabled = ready and not running
        self.ui.cancelButton.enabled = running
        segmentation = p.outputSegmentation if p else None
        self.ui.segmentEditorButton.enabled = bool(segmentation)
        self.ui.segmentSelector.setCurrentNode(segmentation)
        refinable = bool(ready and segmentation and not running)
        for button in (*self._modes.values(), self.ui.saveCaseButton):
            button.enabled = refinable
        segmentId = self.ui.segmentSelector.currentSegmentID() if refinable else ""
        self.ui.lockSegmentButton.enabled = bool(segmentId)
        locked = bool(segmentId) and self.logic.isSegmentLocked(segmentation, segmentId)
        if self.ui.lockSegmentButton.checked != locked:
            self.ui.lockSegmentButton.blockSignals(True)  # showing the state is no toggle
            self.ui.lockSegmentButton.checked = locked
            self.ui.lockSegmentButton.blockSignals(False)
        self.ui.undoButton.enabled = refinable and self.logic.canUndoRedo(redo=False)
        self.ui.redoButton.enabled = refinable and self.logic.canUndoRedo(redo=True)
        self.ui.finetuneButton.enabled = self._finetune is None and bool(p and p.model)
        self.ui.finetuneCancelButton.enabled = self._finetune is not None

    # --- models and dependencies ---------------------------------------------------------------------

    def refreshModels(self) -> None:
        self.ui.modelComboBox.clear()
        if self.logic.missingDependencies():
            self.ui.statusLabel.text = _("Python packages are installed when you first press Segment.")
            return
        for modelId, title in self.logic.models():
            self.ui.modelComboBox.addItem(title, modelId)
        wanted = self._parameterNode.model if self._parameterNode else ""
        index = self.ui.modelComboBox.findData(wanted) if wanted else 0
        self.ui.modelComboBox.setCurrentIndex(max(index, 0))

    def onModelChanged(self, index: int) -> None:
        modelId = self.ui.modelComboBox.itemData(index) if index >= 0 else None
        if self._parameterNode and modelId:
            self._parameterNode.model = modelId
        self.ui.modelCardText.setPlainText(self.logic.modelCard(modelId) if modelId else "")

    def onModelsInstalled(self, modelIds) -> None:
        """A catalog install finished: its (first) package becomes the selected model."""
        if modelIds and self._parameterNode:
            self._parameterNode.model = modelIds[0]
        self.refreshModels()

    def ensureDependencies(self) -> bool:
        missing = self.logic.missingDependencies()
        if not missing:
            return True
        question = _("SegmentAI needs these Python packages: {names}. Download and install them now? This takes "
                     "a few minutes (PyTorch comes from the PyTorch extension).").format(names=", ".join(missing))
        if not self.gui.confirm(question):
            return False
        with self.gui.tryWithErrorDisplay(_("Failed to install SegmentAI's Python packages.")):
            self.logic.installDependencies()
        self.refreshModels()
        self.catalog.refresh()
        return not self.logic.missingDependencies()

    # --- segmentation ----------------------------------------------------------------------------------

    def onSegmentButton(self) -> None:
        if not self.ensureDependencies():
            return
        with self.gui.tryWithErrorDisplay(_("Failed to start segmentation.")):
            p = self._parameterNode
            self._job = self.logic.startSegmentation(p.inputVolume, p.model or None, p.device, p.outputSegmentation,
                                                     self.onProgress, precision=p.precision)
            self.ui.statusLabel.text = _("Segmenting with {model}...").format(model=self._job.model_id)
            self._timer.start()
        self.updateButtons()

    def onProgress(self, fraction: float, message: str) -> None:
        self.ui.progressBar.value = round(100 * fraction)
        self.ui.statusLabel.text = message

    def onPoll(self) -> None:
        if self._finetune is not None:
            self.pollFinetune()
        if self._job is not None and self.logic.pollSegmentation(self._job):
            self.finishSegmentation()
        installing = not self.catalog.poll()
        if self._job is None and self._finetune is None and not installing:
            self._timer.stop()

    def finishSegmentation(self) -> None:
        job, self._job = self._job, None
        if job.state == "succeeded":
            self._parameterNode.outputSegmentation = job.segmentation_node
            self.ui.statusLabel.text = _("Done: {n} segment(s).").format(
                n=job.segmentation_node.GetSegmentation().GetNumberOfSegments())
        else:
            self.ui.progressBar.value = 0
            self.ui.statusLabel.text = job.error
            if job.state == "failed":
                self.gui.error(job.error)
        self.updateButtons()

    def onCancelButton(self) -> None:
        if self._job is not None:
            self._job.cancel()
            self.ui.statusLabel.text = _("Cancelling...")

    def onSegmentEditorButton(self) -> None:
        p = self._parameterNode
        self.gui.openSegmentEditor(p.outputSegmentation, p.inputVolume)

    # --- refine ----------------------------------------------------------------------------------------

    def onPlaceToggled(self, mode: PromptMode, checked: bool) -> None:  # one mode at a time
        for other, button in self._modes.items():
            button.checked = button.checked and (other == mode or not checked)
        if checked or not any(button.checked for button in self._modes.values()):
            self.logic.placePrompts(mode if checked else None, self.refine)  # each prompt refines the segment

    def refine(self, mode: PromptMode, prompt) -> None:  # one undoable step per prompt, other segments protected
        p = self._parameterNode
        if self._job is not None or not p or not p.outputSegmentation:
            return
        with self.gui.tryWithErrorDisplay(_("Refinement failed.")):
            segmentId = self.ui.segmentSelector.currentSegmentID()
            self.ui.statusLabel.text = self.logic.refine(p.outputSegmentation, segmentId, p.inputVolume, mode,
                                                         prompt)[1]
        self.updateButtons()

    def onLockToggled(self, locked: bool) -> None:
        p = self._parameterNode
        segmentId = self.ui.segmentSelector.currentSegmentID()
        if not p or not p.outputSegmentation or not segmentId:
            return
        with self.gui.tryWithErrorDisplay(_("Failed to lock the segment.")):
            self.ui.statusLabel.text = self.logic.setSegmentLocked(p.outputSegmentation, segmentId, locked,
                                                                   p.inputVolume)
        self.updateButtons()

    def onUndoRedo(self, redo: bool) -> None:
        self.logic.undoRedo(redo)
        self.updateButtons()

    # --- training ----------------------------------------------------------------------------------------

    def onSaveCase(self) -> None:
        p = self._parameterNode
        with self.gui.tryWithErrorDisplay(_("Failed to save the training case.")):
            self.ui.statusLabel.text = self.logic.saveTrainingCase(p.inputVolume, p.outputSegmentation,
                                                                   p.datasetDir)[1]

    def onFinetune(self) -> None:
        p = self._parameterNode
        with self.gui.tryWithErrorDisplay(_("Failed to start fine-tuning.")):
            self._finetune = self.logic.startFinetune(p.model, p.datasetDir, p.finetuneEpochs, p.device)
            self.ui.finetuneStatusLabel.text = self.logic.finetuneText(self._finetune)
            self._timer.start()
        self.updateButtons()

    def pollFinetune(self) -> None:  # progress; at the end the curve, the new model, its before/after Dice
        job = self._finetune
        job.poll()
        self.ui.finetuneProgressBar.value = round(100 * job.fraction)
        self.ui.finetuneStatusLabel.text = self.logic.finetuneText(job)
        if not job.done:
            return
        self._finetune = None
        if job.curve_path.is_file():
            self.ui.curveLabel.setPixmap(self.gui.pixmap(job.curve_path))
        with self.gui.tryWithErrorDisplay(_("Failed to add the fine-tuned model.")):
            modelId, self.ui.finetuneStatusLabel.text = self.logic.finishFinetune(job)
            if modelId:
                self._parameterNode.model = modelId
                self.refreshModels()
        self.updateButtons()

    def onFinetuneCancel(self) -> None:
        if self._finetune is not None:  # the next poll reports it
            self._finetune.cancel()
