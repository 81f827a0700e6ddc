"""SegmentAI: AI-assisted segmentation of CT and MRI volumes in 3D Slicer.

The module file stays thin: the Widget owns the panel and every dialog, the Logic adapts the
Slicer-free core (``segmentai_core``) and the MRML layer (``segmentai_mrml``) to the scene, and
the heavy packages (torch, MONAI) are imported only when a segmentation starts.
"""

import importlib.util
import logging
import os
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
# Import name → pip name of what the core needs; torch comes from the PyTorch extension.
DEPENDENCIES = {"torch": "torch", "monai": "monai", "SimpleITK": "SimpleITK", "skimage": "scikit-image",
                "scipy": "scipy", "safetensors": "safetensors", "jsonschema": "jsonschema", "einops": "einops"}
SAMPLE_NAME = "SegmentAIBrainT1"


#
# SegmentAI
#


class SegmentAI(ScriptedLoadableModule):
    """Module description shown in Slicer's module list and help panel."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("SegmentAI")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = ["SegmentAI developers"]
        self.parent.helpText = _(
            "Segment a CT or MRI volume with an AI model: choose the volume, a model (its card lists the "
            "modality, labels, licence and accuracy) and a device, then press Segment. Correct the result in "
            "the Segment Editor. Everything runs locally; see the project page for documentation.")
        self.parent.acknowledgementText = _(
            "Built on 3D Slicer, PyTorch and MONAI. Bundled model weights are Apache-2.0, trained on "
            "permissively licensed data and synthetic phantoms.")
        slicer.app.connect("startupCompleted()", registerSampleData)


def registerSampleData():
    """Add the bundled T1 sample (Apache-2.0) to Slicer's Sample Data module."""
    import SampleData
    from segmentai_core.resources import resources_dir

    sample = resources_dir() / "SampleData" / "sample_t1.nii.gz"
    if not sample.is_file():
        return
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="SegmentAI", sampleName=SAMPLE_NAME, uris=sample.as_uri(), fileNames=f"{SAMPLE_NAME}.nii.gz",
        nodeNames=SAMPLE_NAME, loadFileType="VolumeFile",
        thumbnailFileName=os.path.join(os.path.dirname(__file__), "Resources", "Icons", "SegmentAI.png"))


#
# SegmentAIParameterNode
#


@parameterNodeWrapper
class SegmentAIParameterNode:
    """The panel's state, saved with the scene.

    inputVolume - the volume to segment.
    model - the model package (``id@version``).
    device - where the network runs.
    outputSegmentation - the segmentation to fill (None: create one).
    """

    inputVolume: vtkMRMLScalarVolumeNode
    model: str = ""
    device: Annotated[str, Choice(DEVICES)] = "auto"
    outputSegmentation: vtkMRMLSegmentationNode


#
# SegmentAIWidget
#


class SegmentAIWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: binds the .ui to the parameter node and drives the Logic."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._job = None
        self._timer = None

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
        self.initializeParameterNode()
        self.refreshModels()

    def cleanup(self) -> None:
        self.onCancelButton()
        self.removeObservers()
        self.setParameterNode(None)

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event) -> None:
        self.onCancelButton()
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
        running = self._job is not None
        ready = bool(self._parameterNode and self._parameterNode.inputVolume)
        self.ui.segmentButton.enabled = ready and not running
        self.ui.cancelButton.enabled = running
        self.ui.segmentEditorButton.enabled = bool(self._parameterNode and self._parameterNode.outputSegmentation)

    def refreshModels(self) -> None:
        """Fill the model combo box; before the dependencies are installed it explains what happens."""
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

    def ensureDependencies(self) -> bool:
        """Install what is missing, after asking; returns True when everything is importable."""
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
        if self._job is None or not self.logic.poll(self._job):
            return
        self._timer.stop()
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
        """Open the Segment Editor on the output segmentation and the input volume."""
        p = self._parameterNode
        slicer.util.selectModule("SegmentEditor")
        editor = slicer.modules.segmenteditor.widgetRepresentation().self().editor
        editor.setSegmentationNode(p.outputSegmentation)
        editor.setSourceVolumeNode(p.inputVolume)


#
# SegmentAILogic
#


class SegmentAILogic(ScriptedLoadableModuleLogic):
    """Batch-scriptable entry points (no GUI): an adapter over ``segmentai_mrml``.

    From the Python console::

        logic = slicer.util.getModuleLogic("SegmentAI")
        segmentation = logic.segment(slicer.util.getNode("MRHead"))
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self._mrml = None

    def getParameterNode(self) -> SegmentAIParameterNode:
        return SegmentAIParameterNode(super().getParameterNode())

    @property
    def mrml(self):
        """The MRML-layer logic (created on first use: it imports the core)."""
        if self._mrml is None or self._mrml.scene is not slicer.mrmlScene:
            from segmentai_mrml.logic import SegmentationLogic

            self._mrml = SegmentationLogic(slicer.mrmlScene)
        return self._mrml

    # --- dependencies ------------------------------------------------------------------------------

    @staticmethod
    def missingDependencies() -> List[str]:
        """pip names of the packages that cannot be imported yet."""
        return [pipName for module, pipName in DEPENDENCIES.items() if importlib.util.find_spec(module) is None]

    @staticmethod
    def installDependencies() -> None:
        """torch through the PyTorch extension, the rest from Resources/requirements.txt."""
        if importlib.util.find_spec("torch") is None:
            try:
                import PyTorchUtils
            except ImportError as error:
                raise RuntimeError(_("Install the PyTorch extension from the Extensions Manager first.")) from error
            installer = PyTorchUtils.PyTorchUtilsLogic()
            if installer.installTorch(askConfirmation=False, torchVersionRequirement=">=2.2") is None:
                raise RuntimeError(_("PyTorch could not be installed."))
        requirements = os.path.join(os.path.dirname(__file__), "Resources", "requirements.txt")
        packaging = getattr(slicer, "packaging", None)
        if packaging is not None and hasattr(packaging, "pip_ensure"):  # Slicer >= 5.11
            packaging.pip_ensure(packaging.load_requirements(requirements), requester="SegmentAI")
        else:
            slicer.util.pip_install(["-r", requirements])

    # --- models and segmentation -------------------------------------------------------------------

    def models(self) -> List[Tuple[str, str]]:
        """(id@version, display title) of every usable model package."""
        return [(p.full_id, f"{p.manifest.name} ({p.full_id})") for p in self.mrml.models()]

    def modelCard(self, modelId: str) -> str:
        return self.mrml.model(modelId).card()

    def startSegmentation(self, volumeNode, model=None, device: str = "auto", outputSegmentation=None,
                          onProgress: Optional[Callable[[float, str], None]] = None):
        """Start a background segmentation; poll it with :meth:`poll` from a timer."""
        return self.mrml.start(volumeNode, model, device, onProgress, into=outputSegmentation)

    def poll(self, job) -> bool:
        """Forward progress and apply a finished result (main thread); True once the job is done."""
        return self.mrml.poll(job)

    def segment(self, volumeNode, model=None, device: str = "auto", outputSegmentation=None):
        """Segment ``volumeNode`` and wait (batch mode); returns the segmentation node."""
        logging.getLogger("SegmentAI").info("segmenting %s", volumeNode.GetName())
        return self.mrml.segment(volumeNode, model, device, into=outputSegmentation)

    def loadSampleVolume(self):
        """Load the bundled T1 sample into the scene through Slicer's storage nodes."""
        from segmentai_core.resources import resources_dir
        from segmentai_mrml.storage import load_volume

        return load_volume(slicer.mrmlScene, resources_dir() / "SampleData" / "sample_t1.nii.gz", SAMPLE_NAME)


#
# SegmentAITest
#


class SegmentAITest(ScriptedLoadableModuleTest):
    """Runs the shared MRML-layer cases (the same ones CI runs) and the panel's workflow."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        self.setUp()
        self.test_SharedCases()
        self.setUp()
        self.test_Workflow()

    def test_SharedCases(self) -> None:
        from segmentai_mrml.testing import ALL_CASES

        suite = unittest.TestSuite(unittest.defaultTestLoader.loadTestsFromTestCase(case) for case in ALL_CASES)
        result = unittest.TextTestRunner(verbosity=2).run(suite)
        self.assertTrue(result.wasSuccessful(), f"{len(result.failures)} failure(s), {len(result.errors)} error(s)")

    def test_Workflow(self) -> None:
        """Load the sample, Segment in the background with the event loop pumped, correct, undo."""
        import tempfile
        import time
        from pathlib import Path

        import numpy as np
        from segmentai_core.errors import ModelError
        from segmentai_mrml.editing import SegmentEditor
        from segmentai_mrml.segmentation_nodes import segment_array
        from segmentai_mrml.testing import make_tiny_package

        logic = SegmentAILogic()
        volume = logic.loadSampleVolume()
        self.delayDisplay("Loaded the sample")
        try:
            model = logic.mrml.model()
        except ModelError:  # a build without bundled weights: a real, small random-weight model
            model = make_tiny_package(Path(tempfile.mkdtemp()) / "tiny")
        fractions = []
        job = logic.startSegmentation(volume, model, "auto", None, lambda f, m: fractions.append(f))
        while not logic.poll(job):
            slicer.app.processEvents()
            time.sleep(0.05)
        self.assertEqual(job.state, "succeeded", job.error)
        self.assertEqual(fractions[-1], 1.0)
        segmentation = job.segmentation_node
        segmentId = segmentation.GetSegmentation().GetNthSegmentID(0)
        before = segment_array(segmentation, segmentId, volume)
        self.delayDisplay("Segmented; correcting with the segment-editor logic")
        editor = SegmentEditor(slicer.mrmlScene, segmentation, volume, slicer.app.applicationLogic())
        editor.replace_segment(segmentId, np.zeros_like(before))
        self.assertEqual(int(segment_array(segmentation, segmentId, volume).sum()), 0)
        editor.undo()
        np.testing.assert_array_equal(segment_array(segmentation, segmentId, volume), before)
        editor.close()
        self.delayDisplay("Workflow passed")
