"""Static checks of the Slicer module, which needs the Slicer application to run (no registry has it).

* every ``.py`` and resource under ``SegmentAI/`` (and every shared file of ``Resources/``) is listed
  in ``SegmentAI/CMakeLists.txt``, and everything listed exists;
* ``SegmentAI.json`` follows the ExtensionsIndex catalog schema and matches the top-level CMake;
* every ``self.ui.<name>`` used by the panel (``SegmentAI.py`` and ``SegmentAILib/widget.py``) exists in
  the ``.ui`` with a compatible class, and every parameter-bound widget can represent its parameter's type;
* ``SegmentAI.py`` parses, stays short and imports nothing heavy at module level; the Widget's file
  imports no Qt at module level (its tests run on slicer-core) and talks to the Logic only.
"""

from __future__ import annotations

import ast
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULE_DIR = ROOT / "SegmentAI"
MODULE_FILE = MODULE_DIR / "SegmentAI.py"
WIDGET_FILE = MODULE_DIR / "SegmentAILib" / "widget.py"
WIDGET_FILES = (WIDGET_FILE, MODULE_DIR / "SegmentAILib" / "catalog_panel.py")  # the panel's handlers
UI_FILE = MODULE_DIR / "Resources" / "UI" / "SegmentAI.ui"
IGNORED_PARTS = {"__pycache__", "segmentai.egg-info"}


def cmake_list(text: str, variable: str) -> list[str]:
    """Items of ``set(VARIABLE ...)`` in a CMake file (comments dropped, ${MODULE_NAME} expanded)."""
    match = re.search(rf"set\(\s*{variable}\b(.*?)\)", text, re.DOTALL)
    assert match, f"set({variable} ...) not found"
    body = re.sub(r"#.*", "", match.group(1))
    return [item.replace("${MODULE_NAME}", "SegmentAI") for item in body.split()]


def cmake_value(text: str, variable: str) -> str:
    match = re.search(rf'set\(\s*{variable}\s+"?([^")]*)"?\s*\)', text)
    assert match, f"set({variable} ...) not found"
    return match.group(1)


def module_files(suffixes: tuple[str, ...] = ()) -> set[str]:
    files = set()
    for path in MODULE_DIR.rglob("*"):
        if path.is_file() and not IGNORED_PARTS & set(path.relative_to(MODULE_DIR).parts) and path.suffix != ".pyc":
            files.add(path.relative_to(MODULE_DIR).as_posix())
    return files


@pytest.fixture(scope="module")
def module_cmake() -> str:
    return (MODULE_DIR / "CMakeLists.txt").read_text(encoding="utf-8")


def test_every_python_file_is_listed(module_cmake):
    listed = set(cmake_list(module_cmake, "MODULE_PYTHON_SCRIPTS"))
    present = {f for f in module_files() if f.endswith(".py")}
    assert present - listed == set(), "add these to MODULE_PYTHON_SCRIPTS in SegmentAI/CMakeLists.txt"
    assert listed - present == set(), "listed in MODULE_PYTHON_SCRIPTS but missing"


def test_every_resource_is_listed(module_cmake):
    listed = set(cmake_list(module_cmake, "MODULE_PYTHON_RESOURCES"))
    present = {f for f in module_files() if f.startswith("Resources/")}
    assert present - listed == set(), "add these to MODULE_PYTHON_RESOURCES in SegmentAI/CMakeLists.txt"
    assert listed - present == set(), "listed in MODULE_PYTHON_RESOURCES but missing"
    other = {f for f in module_files() if not f.endswith(".py") and not f.startswith("Resources/")
             and f != "CMakeLists.txt"}
    assert other == set(), "files under SegmentAI/ that the build would not install"


def test_every_shared_resource_is_listed(module_cmake):
    listed = set(cmake_list(module_cmake, "SEGMENTAI_SHARED_RESOURCES"))
    shared = ROOT / "Resources"
    present = {p.relative_to(shared).as_posix() for p in shared.rglob("*") if p.is_file()}
    assert present - listed == set(), "add these to SEGMENTAI_SHARED_RESOURCES in SegmentAI/CMakeLists.txt"
    assert listed - present == set(), "listed in SEGMENTAI_SHARED_RESOURCES but missing"


def test_module_cmake_builds_a_tested_scripted_module(module_cmake):
    assert re.search(r"slicerMacroBuildScriptedModule\((.*?)WITH_GENERIC_TESTS", module_cmake, re.DOTALL)
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in module_cmake


def test_catalog_entry_matches_schema_and_project():
    raw = (ROOT / "SegmentAI.json").read_bytes()
    assert b"\r\n" not in raw, "the ExtensionsIndex wants LF line endings"
    entry = json.loads(raw)
    # ExtensionsIndex schemas/slicer-extension-catalog-entry-schema-v1.0.1.json: required and allowed keys.
    allowed = {"$schema": str, "category": str, "scm_url": str, "scm_revision": str, "scm_type": str,
               "build_dependencies": list, "build_subdirectory": str, "enabled": bool, "tier": int}
    assert {"$schema", "category", "scm_url"} <= set(entry)
    assert set(entry) <= set(allowed), f"keys the schema forbids: {set(entry) - set(allowed)}"
    for key, value in entry.items():
        assert isinstance(value, allowed[key]), key
    assert entry["$schema"].endswith("slicer-extension-catalog-entry-schema-v1.0.1.json#")
    assert 1 <= entry.get("tier", 1) <= 5
    top = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    assert re.search(r"project\(\s*SegmentAI\s*\)", top), "catalog file name must match project()"
    assert entry["category"] == cmake_value(top, "EXTENSION_CATEGORY")
    assert entry["build_dependencies"] == cmake_value(top, "EXTENSION_DEPENDS").split()
    assert entry["scm_url"].removesuffix(".git") == cmake_value(top, "EXTENSION_HOMEPAGE")
    for variable in ("EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION", "EXTENSION_ICONURL",
                     "EXTENSION_SCREENSHOTURLS"):
        assert cmake_value(top, variable)
    assert "licen" in cmake_value(top, "EXTENSION_DESCRIPTION").lower(), "state the weights' licence"
    for line in ("find_package(Slicer REQUIRED)", "add_subdirectory(SegmentAI)",
                 "include(${Slicer_EXTENSION_GENERATE_CONFIG})", "include(${Slicer_EXTENSION_CPACK})"):
        assert line in top
    assert (ROOT / "LICENSE").is_file()


def test_icon_is_128_square_png():
    data = (MODULE_DIR / "Resources" / "Icons" / "SegmentAI.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (128, 128)


def test_requirements_use_ranges_and_leave_torch_to_the_pytorch_extension():
    text = (MODULE_DIR / "Resources" / "requirements.txt").read_text(encoding="utf-8")
    requirements = [line.split("#")[0].strip() for line in text.splitlines() if line.split("#")[0].strip()]
    assert requirements
    assert not any(re.match(r"torch\b", r) for r in requirements)
    assert not any("==" in r for r in requirements), "ranges, not pins"


# --- the module file and its .ui ---------------------------------------------------------------------

# Which widget classes can serve each attribute or signal the module uses on self.ui.<name>.
BUTTONS = {"QPushButton", "QToolButton", "ctkPushButton", "ctkCheckablePushButton"}
COMBOS = {"QComboBox", "ctkComboBox"}
COMPATIBLE = {
    "clicked": BUTTONS, "toggled": BUTTONS | {"QCheckBox"}, "checked": BUTTONS | {"QCheckBox"},
    "addItem": COMBOS, "clear": COMBOS | {"QTextEdit", "QPlainTextEdit", "QLineEdit"}, "findData": COMBOS,
    "itemData": COMBOS, "setCurrentIndex": COMBOS,
    "currentIndex": COMBOS, "currentIndexChanged(int)": COMBOS, "currentText": COMBOS,
    "setPlainText": {"QTextEdit", "QPlainTextEdit"}, "plainText": {"QTextEdit", "QPlainTextEdit"},
    "text": {"QLabel", "QLineEdit"} | BUTTONS, "value": {"QProgressBar", "QSpinBox", "QDoubleSpinBox", "QSlider"},
    "setMRMLScene": {"qMRMLNodeComboBox", "qMRMLSegmentsTableView", "qMRMLSegmentSelectorWidget"},
    "currentNode": {"qMRMLNodeComboBox"}, "setCurrentNode": {"qMRMLNodeComboBox", "qMRMLSegmentSelectorWidget"},
    "currentSegmentID": {"qMRMLSegmentSelectorWidget"}, "setPixmap": {"QLabel"},
    "currentSegmentChanged(QString)": {"qMRMLSegmentSelectorWidget"}, "blockSignals": None,
    "enabled": None, "visible": None, "toolTip": None, "setEnabled": None, "setVisible": None,
}


@pytest.fixture(scope="module")
def ui_widgets() -> dict[str, ET.Element]:
    tree = ET.parse(UI_FILE)
    return {w.get("name"): w for w in tree.iter("widget")}


@pytest.fixture(scope="module")
def module_tree() -> ast.Module:
    return ast.parse(MODULE_FILE.read_text(encoding="utf-8"), filename=str(MODULE_FILE))


@pytest.fixture(scope="module")
def widget_tree() -> ast.Module:
    """The handlers' files as one tree (the Widget and the sections it delegates to)."""
    trees = [ast.parse(path.read_text(encoding="utf-8"), filename=str(path)) for path in WIDGET_FILES]
    return ast.Module(body=[node for tree in trees for node in tree.body], type_ignores=[])


def _is_self_ui(node: ast.AST) -> bool:
    """True for the expression ``self.ui``."""
    return isinstance(node, ast.Attribute) and node.attr == "ui" and isinstance(node.value, ast.Name) \
        and node.value.id == "self"


def ui_uses(tree: ast.Module) -> dict[str, set[str]]:
    """name → members used on ``self.ui.<name>`` (and signals connected with ``.connect("signal(...)", ...)``)."""
    uses: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _is_self_ui(node.value):
            uses.setdefault(node.attr, set())
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and _is_self_ui(node.value.value):
            uses.setdefault(node.value.attr, set()).add(node.attr)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "connect" \
                and isinstance(node.func.value, ast.Attribute) and _is_self_ui(node.func.value.value) \
                and node.args and isinstance(node.args[0], ast.Constant):
            signal = node.args[0].value
            uses.setdefault(node.func.value.attr, set()).add("clicked" if signal.startswith("clicked") else signal)
    return uses


def test_every_ui_name_exists_with_a_compatible_class(module_tree, widget_tree, ui_widgets):
    uses = ui_uses(module_tree)
    for name, attributes in ui_uses(widget_tree).items():
        uses.setdefault(name, set()).update(attributes)
    assert uses, "the module uses no self.ui widget?"
    for name, attributes in uses.items():
        assert name in ui_widgets, f"self.ui.{name} is not in {UI_FILE.name}"
        cls = ui_widgets[name].get("class")
        for attribute in attributes - {"connect"}:
            assert attribute in COMPATIBLE, f"add '{attribute}' (used on self.ui.{name}) to COMPATIBLE"
            classes = COMPATIBLE[attribute]
            assert classes is None or cls in classes, f"self.ui.{name}.{attribute}: {cls} has no such member"


def test_placement_buttons_are_checkable_and_match_the_prompt_modes(widget_tree, ui_widgets):
    """The widget maps placement modes to buttons (``self._modes``): one key per member of
    segmentai_mrml.prompt_modes.PromptMode (``PromptMode.<NAME>``), the values checkable buttons of the .ui."""
    from segmentai_mrml.prompt_modes import PromptMode

    found = [node.value for node in ast.walk(widget_tree) if isinstance(node, ast.Assign)
             and any(isinstance(t, ast.Attribute) and t.attr == "_modes" for t in node.targets)]
    assert len(found) == 1 and isinstance(found[0], ast.Dict), "self._modes = {mode: self.ui.<button>, ...}"
    keys = [ast.unparse(key) for key in found[0].keys]
    assert keys == [f"PromptMode.{mode.name}" for mode in PromptMode], keys
    for value in found[0].values:
        assert isinstance(value, ast.Attribute) and _is_self_ui(value.value)
        widget = ui_widgets[value.attr]
        assert widget.get("class") in BUTTONS, value.attr
        properties = {prop.get("name"): prop.findtext("bool") for prop in widget.findall("property")}
        assert properties.get("checkable") == "true", f"{value.attr} must be checkable"


def test_parameter_bound_widgets_match_the_parameter_node(module_tree, ui_widgets):
    fields = {}
    for node in ast.walk(module_tree):
        wrapped = isinstance(node, ast.ClassDef) and any(
            getattr(d, "id", "") == "parameterNodeWrapper" for d in node.decorator_list)
        if wrapped:
            for item in node.body:
                if isinstance(item, ast.AnnAssign):
                    fields[item.target.id] = ast.unparse(item.annotation)
    assert fields, "no @parameterNodeWrapper class found"
    bound = {}
    for widget in ui_widgets.values():
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bound[prop.findtext("string")] = widget.get("class")
    assert bound, "no widget carries a SlicerParameterName"
    for parameter, cls in bound.items():
        assert parameter in fields, f"{parameter} is bound in the .ui but not a parameter-node field"
        annotation = fields[parameter]
        if annotation.startswith("vtkMRML"):
            assert cls == "qMRMLNodeComboBox", f"{parameter}: node parameters need a qMRMLNodeComboBox"
        elif cls == "QComboBox":
            assert "Choice(" in annotation, f"{parameter}: a QComboBox binds only to an Annotated Choice"


def test_module_file_is_thin_and_cheap_to_import(module_tree):
    lines = MODULE_FILE.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 300, f"SegmentAI.py has {len(lines)} lines: the panel's handlers go in SegmentAILib/"
    assert max(len(line) for line in lines) <= 120
    allowed = {"importlib", "importlib.util", "logging", "os", "pathlib", "unittest", "typing", "qt", "ctk", "vtk",
               "slicer"}
    for node in module_tree.body:
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        for name in names:
            assert name in allowed or name.startswith("slicer."), f"module-level import of {name} in SegmentAI.py"
    classes = {node.name for node in module_tree.body if isinstance(node, ast.ClassDef)}
    assert {"SegmentAI", "SegmentAIWidget", "SegmentAILogic", "SegmentAITest", "SegmentAIParameterNode"} <= classes


def test_ui_file_loads_the_declared_custom_widgets(ui_widgets):
    tree = ET.parse(UI_FILE)
    declared = {c.findtext("class") for c in tree.iter("customwidget")}
    used = {w.get("class") for w in ui_widgets.values()}
    qt_classes = {c for c in used if c.startswith("Q")}
    assert used - qt_classes <= declared, "declare every ctk/qMRML widget under <customwidgets>"
    assert tree.getroot().find("widget").get("class") == "qMRMLWidget"


def test_mrml_layer_imports_no_gui():
    """segmentai_mrml runs on slicer-core and behind the web app: no qt, ctk or slicer.app."""
    for path in (MODULE_DIR / "segmentai_mrml").glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                assert name.split(".")[0] not in ("qt", "ctk", "SampleData"), f"{path.name} imports {name}"
            if isinstance(node, ast.Attribute) and node.attr in ("app", "modules") \
                    and isinstance(node.value, ast.Name) and node.value.id == "slicer":
                raise AssertionError(f"{path.name} uses slicer.{node.attr}")


def test_widget_file_imports_no_qt_and_talks_to_the_logic_only(widget_tree):
    """The Widget's handlers run on slicer-core in tests (no Qt there): Qt is imported inside the functions that
    need it; and the Widget asks the Logic's facade, never the MRML layer behind it (``self.logic.mrml``...)."""
    for node in widget_tree.body:
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        for name in names:
            assert name.split(".")[0] not in ("qt", "ctk", "SegmentAI"), f"module-level import of {name} in widget.py"
    for node in ast.walk(widget_tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and node.value.attr == "logic":
            assert node.attr not in ("mrml", "workflow", "_mrml", "_workflow"), f"self.logic.{node.attr} reach-through"

