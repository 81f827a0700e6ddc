"""SegmentAI: AI-assisted segmentation of CT and MRI volumes in 3D Slicer. A thin module: the panel's handlers live in
``SegmentAILib/widget.py`` and talk to the Logic, the facade over ``segmentai_mrml`` (and through it
``segmentai_core``); torch loads on first use."""

import os
import pathlib
import unittest
from typing import Annotated, Callable, List, Optional, Tuple

import slicer
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

DEVICES, SAMPLE_NAME = ["auto", "cuda", "mps", "cpu"], "SegmentAIBrainT1"
PRECISIONS = ["float32", "bfloat16"]  # segmentai_core.inference.precision.PRECISIONS (no core import at load)


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
    precision: Annotated[str, Choice(PRECISIONS)] = "float32"
    outputSegmentation: vtkMRMLSegmentationNode
    datasetDir: pathlib.Path
    finetuneEpochs: int = 5


class SegmentAIWidget(ScriptedLoadableModuleWidget):
    """The panel: loads the .ui; its handlers live in ``SegmentAILib.widget.Widget``, which talks to the Logic."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        self.logic = self.widget = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        from SegmentAILib.widget import Widget

        uiWidget = slicer.util.loadUI(self.resourcePath("UI/SegmentAI.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = SegmentAILogic()
        self.widget = Widget(self.ui, logic=self.logic, isEntered=lambda: self.parent.isEntered)

    def cleanup(self) -> None:
        if self.widget is not None:
            self.widget.cleanup()

    def onReload(self) -> None:  # developer mode's Reload: the handlers' file too
        import importlib

        import SegmentAILib.widget

        importlib.reload(SegmentAILib.widget)
        ScriptedLoadableModuleWidget.onReload(self)

    def enter(self) -> None:
        self.widget.enter()

    def exit(self) -> None:
        self.widget.exit()


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
        """pip names of the packages that cannot be imported yet (see ``SegmentAILib.dependencies``)."""
        from SegmentAILib.dependencies import missing_dependencies

        return missing_dependencies()

    @staticmethod
    def installDependencies() -> None:
        from SegmentAILib.dependencies import install_dependencies

        install_dependencies(os.path.join(os.path.dirname(__file__), "Resources", "requirements.txt"))

    def models(self) -> List[Tuple[str, str]]:
        """(value, title) per model: packages, and a multi-part catalog model (TotalSegmentator) as one."""
        from segmentai_core.catalog.choices import model_choices

        return model_choices(self.mrml.registry)

    def startSegmentation(self, volumeNode, model=None, device: str = "auto", outputSegmentation=None,
                          onProgress: Optional[Callable[[float, str], None]] = None, precision: str = "float32"):
        return self.mrml.start(volumeNode, model, device, onProgress, into=outputSegmentation, precision=precision)

    def segment(self, volumeNode, model=None, device: str = "auto", outputSegmentation=None,
                precision: str = "float32"):
        """Segment ``volumeNode`` and wait (batch mode); returns the segmentation node."""
        return self.mrml.segment(volumeNode, model, device, into=outputSegmentation, precision=precision)

    @property
    def workflow(self):
        """The panel's steps (``segmentai_mrml.workflow.PanelWorkflow``), undoable through the segment-editor logic."""
        if self._workflow is None or self._workflow.scene is not slicer.mrmlScene:
            from segmentai_mrml.workflow import PanelWorkflow

            self._workflow = PanelWorkflow(self.mrml, app_logic=slicer.app.applicationLogic(),
                                           tool="SegmentAI for Slicer")
        return self._workflow

    # The panel's facade: everything the Widget asks for.

    def modelCard(self, model: str) -> str:
        from segmentai_core.catalog.choices import model_card

        return model_card(model, self.mrml.registry)

    def catalogModels(self) -> List[dict]:
        """The public models' rows (id, task, modality, classes, size, licence, installed?; ``summary``, ``card``)."""
        from segmentai_core.catalog.listing import catalog_rows

        return catalog_rows(self.mrml.registry)

    @staticmethod
    def missingForModel(row: dict) -> List[str]:
        """pip requirements the catalog model of ``row`` needs that are not installed (nnU-Net's networks)."""
        from SegmentAILib.dependencies import missing_for_importer

        return missing_for_importer(row.get("importer", ""))

    @staticmethod
    def installPackages(requirements: List[str]) -> None:
        from SegmentAILib.dependencies import install_packages

        install_packages(requirements)

    def startInstall(self, modelId: str):
        """Download and install a catalog model in a worker thread; the job's ``progress``, ``done``, ``cancel()``."""
        from segmentai_core.catalog.jobs import start_install

        return start_install(modelId, registry=self.mrml.registry)

    def pollSegmentation(self, job) -> bool:
        """Forward progress and apply a finished job's result (main thread); True once it is done."""
        return self.mrml.poll(job)

    @staticmethod
    def defaultDatasetDir() -> str:
        from segmentai_mrml.workflow import default_dataset_dir

        return default_dataset_dir()

    def placePrompts(self, mode, onPrompt: Callable) -> None:
        """Place prompts of ``mode`` (a ``PromptMode``; None: back to view mode); ``onPrompt(mode, prompt)`` each."""
        self.workflow.place(mode, onPrompt)

    def refine(self, segmentationNode, segmentId: str, volumeNode, mode, prompt) -> Tuple[int, str]:
        """Refine one segment with a prompt, one undoable step; returns the voxels changed and the status line."""
        return self.workflow.refine(segmentationNode, segmentId, volumeNode, mode, prompt)

    def canUndoRedo(self, redo: bool = False) -> bool:  # without creating the workflow (cheap at panel start)
        return self._workflow is not None and self._workflow.can_undo_redo(redo)

    def undoRedo(self, redo: bool = False) -> None:
        self.workflow.undo_redo(redo)

    def isSegmentLocked(self, segmentationNode, segmentId: str) -> bool:
        from segmentai_mrml.segment_locks import SegmentLocks

        return SegmentLocks.is_locked(segmentationNode, segmentId)

    def setSegmentLocked(self, segmentationNode, segmentId: str, locked: bool, volumeNode) -> str:
        return self.workflow.set_locked(segmentationNode, segmentId, locked, volumeNode)

    def saveTrainingCase(self, volumeNode, segmentationNode, datasetDir) -> Tuple[str, str]:
        return self.workflow.save_training_case(volumeNode, segmentationNode, datasetDir)

    def startFinetune(self, model: str, datasetDir, epochs: int = 5, device: str = "auto"):
        return self.workflow.start_finetune(model, datasetDir, epochs, device)

    def finetuneText(self, job) -> str:
        return self.workflow.finetune_text(job)

    def finishFinetune(self, job) -> Tuple[Optional[str], str]:
        """A finished run: the new model joins the list; returns its ``id@version`` (or None) and the status line."""
        return self.workflow.finish_finetune(job)

    def closeRefinement(self) -> None:
        if self._workflow is not None:
            self._workflow.close()
            self._workflow = None

    def loadSampleVolume(self):
        from segmentai_core.resources import resources_dir
        from segmentai_mrml.storage import load_volume

        return load_volume(slicer.mrmlScene, resources_dir() / "SampleData" / "sample_t1.nii.gz", SAMPLE_NAME)


class SegmentAITest(ScriptedLoadableModuleTest):
    """Runs the shared MRML-layer cases (the same ones CI runs) and the panel's workflow.

    In a Slicer without SegmentAI's Python packages it says which are missing (and is skipped) instead of
    failing on an ImportError; it leaves torch's thread count as it found it."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        missing = SegmentAILogic.missingDependencies()
        if missing:
            message = _("SegmentAI's self-test needs these Python packages: {names}. Press Segment in the SegmentAI "
                        "panel once to install them, then run the test again.").format(names=", ".join(missing))
            self.delayDisplay(message)
            self.skipTest(message)
        import torch

        threads = torch.get_num_threads()
        try:
            for test in (self.test_SharedCases, self.test_Workflow):
                self.setUp()
                test()
        finally:
            torch.set_num_threads(threads)

    def test_SharedCases(self) -> None:
        from segmentai_mrml.tests.cases import ALL_CASES

        suite = unittest.TestSuite(unittest.defaultTestLoader.loadTestsFromTestCase(case) for case in ALL_CASES)
        result = unittest.TextTestRunner(verbosity=2).run(suite)
        self.assertTrue(result.wasSuccessful(), f"{len(result.failures)} failure(s), {len(result.errors)} error(s)")

    def test_Workflow(self) -> None:
        """Load the sample, Segment (event loop pumped), refine with a point, undo, save a training case."""
        from segmentai_mrml.tests.cases import check_panel_workflow

        logic = SegmentAILogic()
        volume = logic.loadSampleVolume()
        self.delayDisplay("Loaded the sample")
        check_panel_workflow(self, logic.mrml, logic.workflow, volume, slicer.app.processEvents)
        logic.closeRefinement()
        self.delayDisplay("Workflow passed")
