"""The core must import without Slicer, Qt, ctk or VTK (it is used outside Slicer too)."""

import pkgutil
from pathlib import Path

import segmentai_core
from conftest import fresh_python_json

FORBIDDEN = ("slicer", "qt", "ctk", "vtk", "PythonQt", "vtkmodules")


def all_core_modules():
    root = Path(segmentai_core.__file__).parent
    found = pkgutil.walk_packages([str(root)], prefix="segmentai_core.")
    return ["segmentai_core"] + [m.name for m in found if not m.name.rsplit(".", 1)[-1].startswith("_")]


def test_every_core_module_imports_without_slicer_qt_ctk_vtk():
    modules = all_core_modules()
    assert len(modules) > 15
    code = (
        "import importlib, json, sys\n"
        f"mods = {modules!r}\n"
        "for m in mods: importlib.import_module(m)\n"
        "# importing torch/monai-using functions happens lazily; exercise the heavy ones too\n"
        "import segmentai_core.inference.engine, segmentai_core.models.networks\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    loaded = fresh_python_json(code)
    offenders = [m for m in loaded if m.split(".")[0] in FORBIDDEN]
    assert offenders == []


def test_no_two_names_beside_the_module_differ_only_in_case():
    """Slicer adds ``SegmentAI/`` to the import path on macOS and Windows too, whose file systems ignore case:
    two entries there (modules, packages) that differ only in case would shadow each other on import."""
    module_dir = Path(segmentai_core.__file__).parents[1]
    names = [p.name.removesuffix(".py") for p in module_dir.iterdir()
             if (p.suffix == ".py" or (p / "__init__.py").is_file())]
    assert {"SegmentAI", "SegmentAILib", "segmentai_core", "segmentai_mrml", "segmentai_web"} <= set(names)
    folded = [name.lower() for name in names]
    assert len(set(folded)) == len(folded), sorted(names)


def test_pyproject_lists_every_package():
    """pyproject.toml lists packages explicitly (Resources/ is mapped into the wheel): keep it complete."""
    import pytest

    tomllib = pytest.importorskip("tomllib")
    root = Path(segmentai_core.__file__).parents[2]
    listed = set(tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["packages"])
    on_disk = {
        ".".join(init.parent.relative_to(root / "SegmentAI").parts)
        for init in (root / "SegmentAI").glob("segmentai_*/**/__init__.py")
    }
    assert on_disk - listed == set(), "add these packages to pyproject.toml [tool.setuptools] packages"
