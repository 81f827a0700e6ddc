"""SegmentAI: AI-assisted segmentation of CT and MRI volumes in 3D Slicer. A thin module: the Widget owns the panel
and its dialogs, the Logic adapts ``segmentai_mrml`` (and through it ``segmentai_core``); torch loads on first use."""

import os
import pathlib
import unittest
from typing import Annotated, Callable, List, Optional, Tuple

import qt
import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

DEVICES = ["auto", "cuda", "mps", "cpu"]
SAMPLE_NAME = "SegmentAIBrainT1"


class SegmentAI(ScriptedLoadableModule):
    """Module description shown in Slicer's module list and help panel."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("SegmentAI")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = ["SegmentAI developers"]
        self.parent.helpText = _(
            "Segment a CT or MRI volume with an AI model: choose the volume, a model (its card lists the modality, "
            "labels, licence and accuracy) and a device, then press Segment. Correct the result in the Segment "
            "Editor or with positive/negative points, boxes and scribbles (Refine). Save corrected cases into a "
            "dataset folder and fine-tune the model on them. Everything runs locally; see the project page.")
        self.parent.acknowledgementText = _(
            "Built on 3D Slicer, PyTorch and MONAI. Bundled model weights are Apache-2.0, trained on "
            "permissively licensed data and synthetic phantoms.")
        slicer.app.connect("startupCompleted()", registerSampleData)


def registerSampleData():
    import SampleData
    from segmentai_core.resources import resources_dir

    sample = resources_dir() / "SampleData" / "sample_t1.nii.gz"
    if not sample.is_file():
        return
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="SegmentAI", sampleName=SAMPLE_NAME, uris=sample.as_uri(), fileNames=f"{SAMPLE_NAME}.nii.gz",
        nodeNames=SAMPLE_NAME, loadFileType="VolumeFile",
        thumbnailFileName=os.path.join(os.path.dirname(__file__), "Resources", "Icons", "SegmentAI.png"))


@parameterNodeWrapper
class SegmentAIParameterNode:
    """The panel's state, saved with the scene (model: ``id@version``; outputSegmentation None: create one)."""

    inputVolume: vtkMRMLScalarVolumeNode
    model: str = ""
    device: Annotated[str, Choice(DEVICES)] = "auto"
    outputSegmentation: vtkMRMLSegmentationNode
    datasetDir: pathlib.Path
    finetuneEpochs: int = 5


class SegmentAIWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: binds the .ui to the parameter node and drives the Logic."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = self._parameterNode = self._parameterNodeGuiTag = None
        self._job = self._finetune = self._timer = None  # segmentation and fine-tuning jobs, polled by the timer

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/SegmentAI.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = SegmentAILogic()
        self._timer = qt.QTimer()
        self._timer.setInterval(100)
        self._timer.timeout.connect(self.onPoll)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.segmentButton.connect("clicked(bool)", self.onSegmentButton)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancelButton)
        self.ui.segmentEditorButton.connect("clicked(bool)", self.onSegmentEditorButton)
        self.ui.modelComboBox.connect("currentIndexChanged(int)", self.onModelChanged)
        self._modes = {True: self.ui.positivePointButton, False: self.ui.negativePointButton, "box": self.ui.boxButton,
                       "scribble+": self.ui.positiveScribbleButton, "scribble-": self.ui.negativeScribbleButton}
        for mode, button in self._modes.items():
            button.toggled.connect(lambda checked, mode=mode: self.onPlaceToggled(mode, checked))
        self.ui.undoButton.connect("clicked(bool)", lambda: self.onUndoRedo(redo=False))
        self.ui.redoButton.connect("clicked(bool)", lambda: self.onUndoRedo(redo=True))
        self.ui.saveCaseButton.connect("clicked(bool)", self.onSaveCase)
        self.ui.finetuneButton.connect("clicked(bool)", self.onFinetune)
        self.ui.finetuneCancelButton.connect("clicked(bool)", self.onFinetuneCancel)
        self.initializeParameterNode()
        self.refreshModels()

    def cleanup(self) -> None:
        self.onCancelButton()
        self.onFinetuneCancel()
        self.logic.closeRefinement()
        self.removeObservers()
        self.setParameterNode(None)

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event) -> None:
        self.onCancelButton()
        for button in self._modes.values():
            button.checked = False
        self.logic.closeRefinement()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            firstVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolume:
                self._parameterNode.inputVolume = firstVolume
        if str(self._parameterNode.datasetDir) in ("", "."):
            from segmentai_mrml.workflow import default_dataset_dir

            self._parameterNode.datasetDir = pathlib.Path(default_dataset_dir())

    def setParameterNode(self, inputParameterNode: Optional[SegmentAIParameterNode]) -> None:
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
        self.ui.undoButton.enabled = refinable and self.logic.canUndoRedo(redo=False)
        self.ui.redoButton.enabled = refinable and self.logic.canUndoRedo(redo=True)
        self.ui.finetuneButton.enabled = self._finetune is None and bool(p and p.model)
        self.ui.finetuneCancelButton.enabled = self._finetune is not None

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
        self.ui.modelCardText.setPlainText(self.logic.mrml.model(modelId).card() if modelId else "")

    def ensureDependencies(self) -> bool:
        missing = self.logic.missingDependencies()
        if not missing:
            return True
        question = _("SegmentAI needs these Python packages: {names}. Download and install them now? This takes "
                     "a few minutes (PyTorch comes from the PyTorch extension).").format(names=", ".join(missing))
        if not slicer.util.confirmOkCancelDisplay(question):
            return False
        with slicer.util.tryWithErrorDisplay(_("Failed to install SegmentAI's Python packages."), waitCursor=True):
            self.logic.installDependencies()
        self.refreshModels()
        return not self.logic.missingDependencies()

    def onSegmentButton(self) -> None:
        if not self.ensureDependencies():
            return
        with slicer.util.tryWithErrorDisplay(_("Failed to start segmentation."), waitCursor=True):
            p = self._parameterNode
            self._job = self.logic.startSegmentation(p.inputVolume, p.model or None, p.device, p.outputSegmentation,
                                                     self.onProgress)
            self.ui.statusLabel.text = _("Segmenting with {model}...").format(model=self._job.model_id)
            self._timer.start()
        self.updateButtons()

    def onProgress(self, fraction: float, message: str) -> None:
        self.ui.progressBar.value = round(100 * fraction)
        self.ui.statusLabel.text = message

    def onPoll(self) -> None:
        if self._finetune is not None:
            self.pollFinetune()
        if self._job is not None and self.logic.mrml.poll(self._job):
            self.finishSegmentation()
        if self._job is None and self._finetune is None:
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
                slicer.util.errorDisplay(job.error, windowTitle=_("SegmentAI"))
        self.updateButtons()

    def onCancelButton(self) -> None:
        if self._job is not None:
            self._job.cancel()
            self.ui.statusLabel.text = _("Cancelling...")

    def onSegmentEditorButton(self) -> None:
        p = self._parameterNode
        slicer.util.selectModule("SegmentEditor")
        editor = slicer.modules.segmenteditor.widgetRepresentation().self().editor
        editor.setSegmentationNode(p.outputSegmentation)
        editor.setSourceVolumeNode(p.inputVolume)

    def onPlaceToggled(self, mode, checked: bool) -> None:  # one mode at a time: points (True/False), box, scribbles
        for other, button in self._modes.items():
            button.checked = button.checked and (other == mode or not checked)
        if checked or not any(button.checked for button in self._modes.values()):
            workflow = self.logic.workflow  # each placed point, box or scribble refines the segment:
            on_prompt = [lambda *prompt, refine=refine: self.refine(refine, *prompt)
                         for refine in (workflow.refine, workflow.refine_box, workflow.refine_scribble)]
            workflow.prompts(*on_prompt).place(mode if checked else None)

    def refine(self, refine: Callable, *prompt) -> None:  # one undoable step per prompt, other segments locked
        p = self._parameterNode
        if self._job is not None or not p or not p.outputSegmentation:
            return
        with slicer.util.tryWithErrorDisplay(_("Refinement failed."), waitCursor=True):
            changed = refine(p.outputSegmentation, self.ui.segmentSelector.currentSegmentID(), p.inputVolume, *prompt)
            self.ui.statusLabel.text = _("Refined: {n} voxel(s) changed.").format(n=changed)
        self.updateButtons()

    def onUndoRedo(self, redo: bool) -> None:
        self.logic.workflow.undo_redo(redo)
        self.updateButtons()

    def onSaveCase(self) -> None:
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Failed to save the training case."), waitCursor=True):
            caseId = self.logic.workflow.save_training_case(p.inputVolume, p.outputSegmentation, p.datasetDir)
            self.ui.statusLabel.text = _("Saved {case} in {folder}.").format(case=caseId, folder=p.datasetDir)

    def onFinetune(self) -> None:
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Failed to start fine-tuning."), waitCursor=True):
            self._finetune = self.logic.workflow.start_finetune(p.model, p.datasetDir, p.finetuneEpochs, p.device)
            self._timer.start()
        self.updateButtons()

    def pollFinetune(self) -> None:  # progress; at the end the curve, the new model, its before/after Dice
        job = self._finetune
        job.poll()
        self.ui.finetuneProgressBar.value = round(100 * job.fraction)
        self.ui.finetuneStatusLabel.text = job.summary()
        if not job.done:
            return
        self._finetune = None
        if job.curve_path.is_file():
            self.ui.curveLabel.setPixmap(qt.QPixmap(str(job.curve_path)))
        if job.state == "succeeded":
            with slicer.util.tryWithErrorDisplay(_("Failed to add the fine-tuned model."), waitCursor=True):
                self._parameterNode.model = self.logic.workflow.add_finetuned_model(job)
                self.refreshModels()
        self.updateButtons()

    def onFinetuneCancel(self) -> None:
        if self._finetune is not None:
            self._finetune.cancel()  # the next poll reports it


class SegmentAILogic(ScriptedLoadableModuleLogic):
    """Batch-scriptable entry points over ``segmentai_mrml``, e.g. from the Python console:
    ``slicer.util.getModuleLogic("SegmentAI").segment(slicer.util.getNode("MRHead"))``."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self._mrml = None
        self._workflow = None

    def getParameterNode(self) -> SegmentAIParameterNode:
        return SegmentAIParameterNode(super().getParameterNode())

    @property
    def mrml(self):
        if self._mrml is None or self._mrml.scene is not slicer.mrmlScene:
            from segmentai_mrml.logic import SegmentationLogic

            self._mrml = SegmentationLogic(slicer.mrmlScene)
        return self._mrml

    @staticmethod
    def missingDependencies() -> List[str]:
        """pip names of the packages that cannot be imported yet (see ``segmentai_mrml.dependencies``)."""
        from segmentai_mrml.dependencies import missing_dependencies

        return missing_dependencies()

    @staticmethod
    def installDependencies() -> None:
        from segmentai_mrml.dependencies import install_dependencies

        install_dependencies(os.path.join(os.path.dirname(__file__), "Resources", "requirements.txt"))

    def models(self) -> List[Tuple[str, str]]:
        return [(p.full_id, f"{p.manifest.name} ({p.full_id})") for p in self.mrml.models()]

    def startSegmentation(self, volumeNode, model=None, device: str = "auto", outputSegmentation=None,
                          onProgress: Optional[Callable[[float, str], None]] = None):
        return self.mrml.start(volumeNode, model, device, onProgress, into=outputSegmentation)

    def segment(self, volumeNode, model=None, device: str = "auto", outputSegmentation=None):
        """Segment ``volumeNode`` and wait (batch mode); returns the segmentation node."""
        return self.mrml.segment(volumeNode, model, device, into=outputSegmentation)

    @property
    def workflow(self):
        """Refine with undo, save training cases, fine-tune (``segmentai_mrml.workflow.PanelWorkflow``)."""
        if self._workflow is None or self._workflow.scene is not slicer.mrmlScene:
            from segmentai_mrml.workflow import PanelWorkflow

            self._workflow = PanelWorkflow(self.mrml, slicer.app.applicationLogic())
        return self._workflow

    def canUndoRedo(self, redo: bool = False) -> bool:  # without creating the workflow (cheap at panel start)
        return self._workflow is not None and self._workflow.can_undo_redo(redo)

    def closeRefinement(self) -> None:
        if self._workflow is not None:
            self._workflow.close()
            self._workflow = None

    def loadSampleVolume(self):
        from segmentai_core.resources import resources_dir
        from segmentai_mrml.storage import load_volume

        return load_volume(slicer.mrmlScene, resources_dir() / "SampleData" / "sample_t1.nii.gz", SAMPLE_NAME)


class SegmentAITest(ScriptedLoadableModuleTest):
    """Runs the shared MRML-layer cases (the same ones CI runs) and the panel's workflow."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        for test in (self.test_SharedCases, self.test_Workflow):
            self.setUp()
            test()

    def test_SharedCases(self) -> None:
        from segmentai_mrml.testing import ALL_CASES

        suite = unittest.TestSuite(unittest.defaultTestLoader.loadTestsFromTestCase(case) for case in ALL_CASES)
        result = unittest.TextTestRunner(verbosity=2).run(suite)
        self.assertTrue(result.wasSuccessful(), f"{len(result.failures)} failure(s), {len(result.errors)} error(s)")

    def test_Workflow(self) -> None:
        """Load the sample, Segment (event loop pumped), refine with a point, undo, save a training case."""
        from segmentai_mrml.testing import check_panel_workflow

        logic = SegmentAILogic()
        volume = logic.loadSampleVolume()
        self.delayDisplay("Loaded the sample")
        check_panel_workflow(self, logic.mrml, logic.workflow, volume, slicer.app.processEvents)
        logic.closeRefinement()
        self.delayDisplay("Workflow passed")
