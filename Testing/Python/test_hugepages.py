"""numpy's huge-page advice is turned off only where the kernel would compact on fault, and a user's
NUMPY_MADVISE_HUGEPAGE always wins (each case runs in a fresh interpreter: the setting is process-wide)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from segmentai_core.inference.hugepages import compacts_on_fault

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("text, stalls", [
    ("always defer defer+madvise [madvise] never\n", True),
    ("[always] defer defer+madvise madvise never\n", True),
    ("always defer [defer+madvise] madvise never\n", True),
    ("always [defer] defer+madvise madvise never\n", False),
    ("always defer defer+madvise madvise [never]\n", False),
])
def test_defrag_modes(tmp_path, text, stalls):
    defrag = tmp_path / "defrag"
    defrag.write_text(text)
    assert compacts_on_fault(defrag) is stalls


def test_unreadable_setting_changes_nothing(tmp_path):
    assert compacts_on_fault(tmp_path / "missing") is False


def _advice_after(defrag: Path, env_value=None) -> str:
    """numpy's advice flag in a new process after avoid_hugepage_stalls(defrag)."""
    env = {k: v for k, v in os.environ.items() if k != "NUMPY_MADVISE_HUGEPAGE"}
    if env_value is not None:
        env["NUMPY_MADVISE_HUGEPAGE"] = env_value
    code = ("import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]);"
            "from numpy._core import multiarray as m;"
            "from segmentai_core.inference.hugepages import avoid_hugepage_stalls as a;"
            "off = a(Path(sys.argv[2])); before = m._set_madvise_hugepage(True);"  # returns the previous flag
            "print(off, before)")
    out = subprocess.run([sys.executable, "-c", code, str(ROOT / "SegmentAI"), str(defrag)],
                         capture_output=True, text=True, check=True, env=env)
    return out.stdout.strip()


def test_advice_turned_off_where_it_stalls(tmp_path):
    stalling, calm = tmp_path / "stalling", tmp_path / "calm"
    stalling.write_text("always defer defer+madvise [madvise] never\n")
    calm.write_text("always defer defer+madvise madvise [never]\n")
    assert _advice_after(stalling) == "True False"
    assert _advice_after(calm) == "False True"


def test_user_setting_wins(tmp_path):
    stalling = tmp_path / "stalling"
    stalling.write_text("always defer defer+madvise [madvise] never\n")
    assert _advice_after(stalling, "1") == "False True"
    assert _advice_after(stalling, "0") == "True False"
