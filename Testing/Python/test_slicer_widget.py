"""The Slicer panel's handlers (``SegmentAILib.widget.Widget``) driven against a fake Logic on slicer-core.

No Qt here: the ``.ui``'s widgets are stand-ins with the members the panel uses, dialogs and timers come
from a fake ``gui``, and the Logic is a fake facade that records what the Widget asked. The Widget's
real collaborators are checked elsewhere (the Logic's steps in ``test_mrml_layer.py``, the ``.ui``'s
names and classes in ``test_slicer_module_static.py``).
"""

from __future__ import annotations

import contextlib
import pathlib

import pytest

pytest.importorskip("slicer_core", reason="slicer-core (MRML) is needed: pip install -e '.[test]'")

from segmentai_core.errors import InputError  # noqa: E402
from segmentai_mrml.prompt_modes import PromptMode  # noqa: E402
from SegmentAILib.widget import Widget  # noqa: E402


class Signal:
    def __init__(self) -> None:
        self.slots = []

    def connect(self, slot) -> None:
        self.slots.append(slot)

    def emit(self, *args) -> None:
        for slot in list(self.slots):
            slot(*args)


class FakeWidget:
    """A stand-in for one Qt widget of the .ui: the properties, signals and methods the panel uses."""

    def __init__(self, name: str) -> None:
        self.name, self.enabled, self.text, self.value, self.plainText, self.pixmap = name, True, "", 0, "", None
        self.toggled, self.signals, self._checked, self._blocked = Signal(), {}, False, False
        self.items, self.currentIndex, self.currentNode, self.segmentId = [], -1, None, ""

    @property
    def checked(self) -> bool:
        return self._checked

    @checked.setter
    def checked(self, value: bool) -> None:
        changed, self._checked = self._checked != bool(value), bool(value)
        if changed and not self._blocked:
            self.toggled.emit(self._checked)

    def blockSignals(self, blocked: bool) -> None:
        self._blocked = blocked

    def connect(self, signal: str, slot) -> None:
        self.signals.setdefault(signal, Signal()).connect(slot)

    def click(self) -> None:  # PythonQt calls a slot with as many arguments as it takes: none here
        self.signals.get("clicked(bool)", Signal()).emit()

    def toggle(self) -> None:
        self.checked = not self.checked

    # QComboBox
    def clear(self) -> None:
        self.items, self.currentIndex = [], -1

    def addItem(self, title: str, data) -> None:
        self.items.append((title, data))

    def findData(self, data) -> int:
        return next((i for i, (_, d) in enumerate(self.items) if d == data), -1)

    def itemData(self, index: int):
        return self.items[index][1]

    def setCurrentIndex(self, index: int) -> None:
        self.currentIndex = index
        self.signals.get("currentIndexChanged(int)", Signal()).emit(index)

    # qMRMLSegmentSelectorWidget, QPlainTextEdit, QLabel
    def setCurrentNode(self, node) -> None:
        self.currentNode = node

    def currentSegmentID(self) -> str:
        return self.segmentId

    def setPlainText(self, text: str) -> None:
        self.plainText = text

    def setPixmap(self, pixmap) -> None:
        self.pixmap = pixmap


class FakeUi:
    def __init__(self) -> None:
        self._widgets = {}

    def __getattr__(self, name: str) -> FakeWidget:
        if name.startswith("_"):
            raise AttributeError(name)
        return self._widgets.setdefault(name, FakeWidget(name))


class FakeParameterNode:
    """The parameter node wrapper's fields; setting one fires ModifiedEvent, as the wrapper does."""

    FIELDS = ("inputVolume", "model", "device", "outputSegmentation", "datasetDir", "finetuneEpochs", "precision")

    def __init__(self) -> None:
        object.__setattr__(self, "_observers", {})
        for name, value in zip(self.FIELDS, (None, "", "auto", None, pathlib.Path("."), 5, "float32")):
            object.__setattr__(self, name, value)
        self.gui_tags = []

    def __setattr__(self, name: str, value) -> None:
        object.__setattr__(self, name, value)
        if name in self.FIELDS:
            for callback in list(self._observers.values()):
                callback(self, "ModifiedEvent")

    def connectGui(self, ui) -> str:
        self.gui_tags.append("tag")
        return "tag"

    def disconnectGui(self, tag) -> None:
        self.gui_tags.remove(tag)

    def AddObserver(self, event, callback, priority=0.0) -> int:
        tag = len(self._observers) + 1
        self._observers[tag] = callback
        return tag

    def RemoveObserver(self, tag) -> None:
        self._observers.pop(tag, None)


class FakeJob:
    def __init__(self, model_id: str) -> None:
        self.model_id, self.state, self.error = model_id, "running", ""
        self.segmentation_node, self.cancelled = None, False

    def cancel(self) -> None:
        self.cancelled = True


class FakeFinetuneJob:
    def __init__(self, out: pathlib.Path) -> None:
        self.fraction, self.done, self.state, self.curve_path, self.polls = 0.0, False, "running", out / "curve.png", 0

    def poll(self) -> None:
        self.polls += 1

    def cancel(self) -> None:
        self.state = "cancelled"


def catalog_row(model_id: str, installed: str, supported: bool) -> dict:
    """A row as ``segmentai_core.catalog.listing.catalog_rows`` makes it (the keys the panel reads)."""
    return {"id": model_id, "summary": f"{model_id}: CT, 1 classes, size unknown, Apache-2.0, {installed}",
            "card": f"card of {model_id}", "license_text": "Apache-2.0", "installed": installed,
            "title": model_id.title(), "commercial_use": None, "size_text": "size unknown", "provider": "tests",
            "citation": "none",
            "installed_text": "installed" if installed == "yes" else "cannot be installed yet (needs X)"
            if not supported else "not installed", "installable": supported and installed == "no"}


class FakeInstallJob:
    def __init__(self, model_id: str) -> None:
        self.model_id, self.state, self.error, self.notes, self.package_ids = model_id, "running", "", [], []
        self.choice = None
        self.progress, self.cancelled = (0.0, "starting"), False

    @property
    def done(self) -> bool:
        return self.state != "running"

    def cancel(self) -> None:
        self.cancelled = True


class FakeLogic:
    """The facade the Widget talks to; records each call."""

    def __init__(self, tmp: pathlib.Path) -> None:
        self.tmp, self.calls, self.parameterNode = tmp, [], FakeParameterNode()
        self.missing, self.locked, self.undo = [], set(), {False: False, True: False}
        self.onPrompt = None
        self.modelList = [("tiny@1.0.0", "Tiny (tiny@1.0.0)"), ("other@2.0.0", "Other (other@2.0.0)")]
        self.catalogRows = [catalog_row("spleen", "no", True), catalog_row("brats", "no", False),
                            {**catalog_row("total", "no", True), "importer": "nnunet"}]
        self.modelPackages = ["dynamic-network-architectures>=0.4,<0.5"]

    def _record(self, name: str, *args) -> None:
        self.calls.append((name, *args))

    def names(self) -> list:
        return [call[0] for call in self.calls]

    def getParameterNode(self):
        return self.parameterNode

    def defaultDatasetDir(self) -> str:
        return str(self.tmp / "dataset")

    def missingDependencies(self) -> list:
        return list(self.missing)

    def installDependencies(self) -> None:
        self._record("installDependencies")
        self.missing = []

    def models(self) -> list:
        return list(self.modelList)

    def modelCard(self, model: str) -> str:
        return f"card of {model}"

    def startSegmentation(self, volume, model, device, outputSegmentation, onProgress, precision="float32"):
        self._record("startSegmentation", volume, model, device, outputSegmentation)
        self.precision = precision
        self.job = FakeJob(model)
        self.onProgress = onProgress
        return self.job

    def pollSegmentation(self, job) -> bool:
        return job.state != "running"

    def placePrompts(self, mode, onPrompt) -> None:
        self._record("placePrompts", mode)
        self.onPrompt = onPrompt

    def refine(self, segmentation, segmentId, volume, mode, prompt):
        self._record("refine", segmentId, mode, prompt)
        if segmentId in self.locked:
            raise InputError(f"segment '{segmentId}' is locked: unlock it (or select another segment) to refine it")
        self.undo[False] = True
        return 7, mode.result_message(7)

    def canUndoRedo(self, redo: bool = False) -> bool:
        return self.undo[redo]

    def undoRedo(self, redo: bool = False) -> None:
        self._record("undoRedo", redo)
        self.undo = {False: redo, True: not redo}

    def isSegmentLocked(self, segmentation, segmentId) -> bool:
        return segmentId in self.locked

    def setSegmentLocked(self, segmentation, segmentId, locked, volume) -> str:
        self._record("setSegmentLocked", segmentId, locked)
        (self.locked.add if locked else self.locked.discard)(segmentId)
        return f"Segment {segmentId} {'locked' if locked else 'unlocked'}"

    def saveTrainingCase(self, volume, segmentation, datasetDir):
        self._record("saveTrainingCase", datasetDir)
        return "case_0001", f"Saved case_0001 in {datasetDir}"

    def startFinetune(self, model, datasetDir, epochs, device):
        self._record("startFinetune", model, epochs, device)
        self.finetune = FakeFinetuneJob(self.tmp)
        return self.finetune

    def finetuneText(self, job) -> str:
        return "Fine-tuning: starting..." if job.polls == 0 else f"Fine-tuning: poll {job.polls}"

    def finishFinetune(self, job):
        self._record("finishFinetune")
        if job.state != "succeeded":
            return None, "Fine-tuning cancelled; no model was added."
        self.modelList.append(("tiny@1.0.1", "Tiny (tiny@1.0.1)"))
        return "tiny@1.0.1", "Fine-tuned model tiny@1.0.1 added"

    def closeRefinement(self) -> None:
        self._record("closeRefinement")

    def catalogModels(self) -> list:
        return [dict(row) for row in self.catalogRows]

    def missingForModel(self, row) -> list:
        return list(self.modelPackages) if row.get("importer") == "nnunet" else []

    def installPackages(self, requirements) -> None:
        self._record("installPackages", list(requirements))
        self.modelPackages = []

    def startInstall(self, modelId):
        self._record("startInstall", modelId)
        self.install = FakeInstallJob(modelId)
        return self.install


class FakeTimer:
    def __init__(self) -> None:
        self.active = False

    def start(self) -> None:
        self.active = True

    def stop(self) -> None:
        self.active = False


class FakeGui:
    """Dialogs record what they would show; tryWithErrorDisplay catches as Slicer's does."""

    def __init__(self) -> None:
        self.errors, self.confirmAnswer, self.questions, self.timers, self.editor = [], True, [], [], None

    @contextlib.contextmanager
    def tryWithErrorDisplay(self, message: str):
        try:
            yield
        except Exception as error:  # noqa: BLE001 - as slicer.util.tryWithErrorDisplay: show, do not raise
            self.errors.append((message, str(error)))

    def confirm(self, question: str) -> bool:
        self.questions.append(question)
        return self.confirmAnswer

    def error(self, text: str) -> None:
        self.errors.append(("error", text))

    def timer(self, intervalMs, callback):
        timer = FakeTimer()
        timer.callback = callback
        self.timers.append(timer)
        return timer

    def pixmap(self, path):
        return ("pixmap", path)

    def openSegmentEditor(self, segmentation, volume) -> None:
        self.editor = (segmentation, volume)


@pytest.fixture
def panel(tmp_path):
    from segmentai_mrml.scene_setup import create_context

    context = create_context()
    scene = context.scene
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "head")
    logic, gui, ui = FakeLogic(tmp_path), FakeGui(), FakeUi()
    widget = Widget(ui, logic=logic, gui=gui, scene=scene)
    yield widget, logic, gui, ui, scene, volume
    widget.cleanup()
    context.close()


def segmented(widget, logic, ui, scene) -> object:
    """Press Segment, let the job succeed, poll: the panel then has a segmentation with one segment selected."""
    ui.segmentButton.click()
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "head segmentation")
    segmentation.GetSegmentation().AddEmptySegment("Brain")
    logic.job.state, logic.job.segmentation_node = "succeeded", segmentation
    ui.segmentSelector.segmentId = "Brain"
    widget.onPoll()
    return segmentation


def test_panel_starts_with_the_first_volume_the_models_and_the_dataset_folder(panel, tmp_path):
    widget, logic, gui, ui, scene, volume = panel
    p = logic.parameterNode
    assert p.inputVolume is volume and p.datasetDir == tmp_path / "dataset"
    assert [title for title, _ in ui.modelComboBox.items] == ["Tiny (tiny@1.0.0)", "Other (other@2.0.0)"]
    assert p.model == "tiny@1.0.0" and ui.modelCardText.plainText == "card of tiny@1.0.0"
    ui.modelComboBox.setCurrentIndex(1)
    assert p.model == "other@2.0.0" and ui.modelCardText.plainText == "card of other@2.0.0"
    assert ui.segmentButton.enabled and not ui.cancelButton.enabled
    assert not any(ui.__getattr__(name).enabled for name in ("positivePointButton", "boxButton", "saveCaseButton",
                                                              "lockSegmentButton", "undoButton"))


def test_segment_runs_in_the_background_and_the_result_enables_refinement(panel):
    widget, logic, gui, ui, scene, volume = panel
    logic.parameterNode.precision = "bfloat16"
    ui.segmentButton.click()
    assert logic.calls[-1] == ("startSegmentation", volume, "tiny@1.0.0", "auto", None)
    assert logic.precision == "bfloat16"  # the panel's Precision choice reaches the logic
    assert gui.timers[0].active and ui.cancelButton.enabled and not ui.segmentButton.enabled
    assert ui.statusLabel.text == "Segmenting with tiny@1.0.0..."
    logic.onProgress(0.5, "Sliding window")
    assert (ui.progressBar.value, ui.statusLabel.text) == (50, "Sliding window")
    widget.onPoll()
    assert gui.timers[0].active  # still running
    segmentation = segmented(widget, logic, ui, scene)
    assert logic.parameterNode.outputSegmentation is segmentation and not gui.timers[0].active
    assert ui.statusLabel.text == "Done: 1 segment(s)."
    assert ui.segmentSelector.currentNode is segmentation
    assert ui.positivePointButton.enabled and ui.saveCaseButton.enabled and ui.lockSegmentButton.enabled


def test_failed_and_cancelled_runs_report_and_change_nothing(panel):
    widget, logic, gui, ui, scene, volume = panel
    ui.segmentButton.click()
    ui.cancelButton.click()
    assert logic.job.cancelled and ui.statusLabel.text == "Cancelling..."
    logic.job.state, logic.job.error = "cancelled", "Cancelled by the user; nothing was changed."
    widget.onPoll()
    assert ui.statusLabel.text == logic.job.error and gui.errors == []
    ui.segmentButton.click()
    logic.job.state, logic.job.error = "failed", "the image is constant"
    widget.onPoll()
    assert gui.errors == [("error", "the image is constant")] and logic.parameterNode.outputSegmentation is None


def test_missing_packages_are_installed_only_when_the_user_agrees(panel):
    widget, logic, gui, ui, scene, volume = panel
    logic.missing, gui.confirmAnswer = ["torch", "monai"], False
    ui.segmentButton.click()
    assert "torch, monai" in gui.questions[-1] and "startSegmentation" not in logic.names()
    gui.confirmAnswer = True
    ui.segmentButton.click()
    assert logic.names()[-2:] == ["installDependencies", "startSegmentation"]


def test_prompt_modes_are_exclusive_and_each_prompt_refines_the_selected_segment(panel):
    widget, logic, gui, ui, scene, volume = panel
    segmented(widget, logic, ui, scene)
    ui.positivePointButton.toggle()
    assert logic.calls[-1] == ("placePrompts", PromptMode.POSITIVE)
    ui.boxButton.toggle()  # switching modes unchecks the other button, once
    assert not ui.positivePointButton.checked and ui.boxButton.checked
    assert [c[1] for c in logic.calls if c[0] == "placePrompts"][-1] is PromptMode.BOX
    logic.onPrompt(PromptMode.BOX, "roi node")
    assert logic.calls[-1] == ("refine", "Brain", PromptMode.BOX, "roi node")
    assert ui.statusLabel.text == "Box: 7 voxels changed" and ui.undoButton.enabled
    ui.boxButton.toggle()
    assert logic.calls[-1] == ("placePrompts", None)
    ui.undoButton.click()
    assert logic.calls[-1] == ("undoRedo", False) and ui.redoButton.enabled and not ui.undoButton.enabled


def test_a_locked_segment_refuses_prompts_and_the_lock_button_follows_the_selection(panel):
    widget, logic, gui, ui, scene, volume = panel
    segmented(widget, logic, ui, scene)
    ui.lockSegmentButton.toggle()
    assert logic.calls[-1] == ("setSegmentLocked", "Brain", True) and ui.statusLabel.text == "Segment Brain locked"
    ui.negativePointButton.toggle()
    logic.onPrompt(PromptMode.NEGATIVE, (1.0, 2.0, 3.0))
    assert gui.errors[-1] == ("Refinement failed.",
                              "segment 'Brain' is locked: unlock it (or select another segment) to refine it")
    ui.segmentSelector.segmentId = "Other"  # another segment selected: the button shows its state
    ui.segmentSelector.signals["currentSegmentChanged(QString)"].emit("Other")
    assert not ui.lockSegmentButton.checked and logic.calls[-1][0] == "refine"  # showing is no toggle
    ui.segmentSelector.segmentId = "Brain"
    widget.updateButtons()
    assert ui.lockSegmentButton.checked
    ui.lockSegmentButton.toggle()
    assert logic.calls[-1] == ("setSegmentLocked", "Brain", False)


def test_save_case_and_fine_tune_show_the_workflow_lines(panel, tmp_path):
    widget, logic, gui, ui, scene, volume = panel
    segmented(widget, logic, ui, scene)
    ui.saveCaseButton.click()
    assert ui.statusLabel.text == f"Saved case_0001 in {tmp_path / 'dataset'}"
    ui.finetuneButton.click()
    assert logic.calls[-1] == ("startFinetune", "tiny@1.0.0", 5, "auto")
    assert ui.finetuneStatusLabel.text == "Fine-tuning: starting..." and ui.finetuneCancelButton.enabled
    logic.finetune.fraction = 0.4
    widget.onPoll()
    assert (ui.finetuneProgressBar.value, ui.finetuneStatusLabel.text) == (40, "Fine-tuning: poll 1")
    logic.finetune.curve_path.write_bytes(b"png")
    logic.finetune.done, logic.finetune.state = True, "succeeded"
    widget.onPoll()
    assert ui.finetuneStatusLabel.text == "Fine-tuned model tiny@1.0.1 added"
    assert ui.curveLabel.pixmap == ("pixmap", logic.finetune.curve_path)
    assert logic.parameterNode.model == "tiny@1.0.1" and not gui.timers[0].active and ui.finetuneButton.enabled
    assert ui.modelComboBox.items[ui.modelComboBox.currentIndex][1] == "tiny@1.0.1"
    ui.finetuneButton.click()  # a cancelled run adds nothing and says so
    ui.finetuneCancelButton.click()
    logic.finetune.done = True
    widget.onPoll()
    assert ui.finetuneStatusLabel.text == "Fine-tuning cancelled; no model was added."
    assert logic.parameterNode.model == "tiny@1.0.1" and len(ui.modelComboBox.items) == 3


def test_segment_editor_button_and_scene_close(panel):
    widget, logic, gui, ui, scene, volume = panel
    segmentation = segmented(widget, logic, ui, scene)
    ui.segmentEditorButton.click()
    assert gui.editor == (segmentation, volume)
    ui.positiveScribbleButton.toggle()
    scene.Clear(0)  # the close leaves place mode and closes the refinement
    assert not ui.positiveScribbleButton.checked and "closeRefinement" in logic.names()
    assert logic.calls[-2:] == [("placePrompts", None), ("closeRefinement",)]
    assert logic.parameterNode.gui_tags == ["tag"]  # disconnected at the start of the close, connected at its end


def test_catalog_lists_models_and_installs_one_into_the_model_list(panel):
    """The catalog lists each model's line and card; Install asks with the licence, runs in the background with
    progress, and the installed package becomes the selected model."""
    widget, logic, gui, ui, scene, volume = panel
    assert [title for title, _ in ui.catalogComboBox.items] == [r["summary"] for r in logic.catalogRows]
    assert ui.catalogCardText.plainText == "card of spleen" and ui.installButton.enabled
    assert not ui.installCancelButton.enabled
    ui.catalogComboBox.setCurrentIndex(1)  # brats cannot be installed: the button says no
    assert ui.catalogCardText.plainText == "card of brats" and not ui.installButton.enabled
    ui.catalogComboBox.setCurrentIndex(0)
    gui.confirmAnswer = False
    ui.installButton.click()
    assert gui.questions[-1].startswith("Install spleen (Spleen)? Weights licence: Apache-2.0.")
    assert "startInstall" not in logic.names()
    gui.confirmAnswer = True
    ui.installButton.click()
    assert logic.calls[-1] == ("startInstall", "spleen") and gui.timers[0].active
    assert ui.installCancelButton.enabled and not ui.installButton.enabled and not ui.catalogComboBox.enabled
    logic.install.progress = (0.25, "spleen (spleen.zip): 1.0 MB of 4.0 MB at 2.0 MB/s")
    widget.onPoll()
    assert (ui.installProgressBar.value, ui.installStatusLabel.text) == (25, logic.install.progress[1])
    assert gui.timers[0].active
    logic.modelList.append(("spleen@0.5.9", "Spleen (spleen@0.5.9)"))
    logic.catalogRows[0] = catalog_row("spleen", "yes", True)
    logic.install.state, logic.install.package_ids, logic.install.choice = "succeeded", ["spleen@0.5.9"], \
        "spleen@0.5.9"
    logic.install.notes = ["spleen: the provider publishes a SHA-1 only, which was checked"]
    widget.onPoll()
    assert ui.installStatusLabel.text.startswith("Installed spleen@0.5.9; it is in the model list.")
    assert "SHA-1 only" in ui.installStatusLabel.text and not gui.timers[0].active
    assert logic.parameterNode.model == "spleen@0.5.9"
    assert ui.modelComboBox.items[ui.modelComboBox.currentIndex][1] == "spleen@0.5.9"
    assert ui.catalogComboBox.items[0][0].endswith("yes") and not ui.installButton.enabled  # installed now


def test_catalog_install_cancelled_or_failed_adds_nothing(panel):
    widget, logic, gui, ui, scene, volume = panel
    ui.installButton.click()
    ui.installCancelButton.click()
    assert logic.install.cancelled and ui.installStatusLabel.text == "Cancelling the install..."
    logic.install.state, logic.install.error = "cancelled", "Install of spleen cancelled; nothing was installed."
    widget.onPoll()
    assert ui.installStatusLabel.text == logic.install.error and gui.errors == [] and ui.installButton.enabled
    ui.installButton.click()
    logic.install.state, logic.install.error = "failed", "cannot download http://x/spleen.zip: connection refused"
    widget.onPoll()
    assert gui.errors == [("error", logic.install.error)] and ui.installProgressBar.value == 0
    assert len(ui.modelComboBox.items) == 2 and logic.parameterNode.model == "tiny@1.0.0"
    ui.installButton.click()
    widget.cleanup()  # closing the panel cancels a running install
    assert logic.install.cancelled


def test_an_nnunet_catalog_model_asks_for_its_python_packages_first(panel):
    widget, logic, gui, ui, scene, volume = panel
    ui.catalogComboBox.setCurrentIndex(2)
    answers = iter([True, False])  # the licence: yes; the packages: no
    gui.confirm = lambda question: (gui.questions.append(question), next(answers))[1]
    ui.installButton.click()
    assert "dynamic-network-architectures" in gui.questions[-1] and "startInstall" not in logic.names()
    gui.confirm = lambda question: (gui.questions.append(question), True)[1]
    ui.installButton.click()
    assert logic.calls[-2:] == [("installPackages", ["dynamic-network-architectures>=0.4,<0.5"]),
                                ("startInstall", "total")]
