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


def test_the_cli_turns_the_advice_off_before_it_reads_a_volume():
    """The first volume a ``segmentai`` process reads is its first large allocation (0.36 s instead of
    0.06 s for a 150 MB head with the advice), so the CLI decides before it dispatches a command."""
    from conftest import fresh_python_json

    env_set = "NUMPY_MADVISE_HUGEPAGE" in os.environ
    code = ("import json, contextlib, io\n"
            "from numpy._core import multiarray as m\n"
            "from segmentai_core.cli.main import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    main(['models', 'list'])\n"
            "print(json.dumps(m._set_madvise_hugepage(True)))\n")
    advice_was_on = fresh_python_json(code)
    if not env_set:
        assert advice_was_on is (not compacts_on_fault())
