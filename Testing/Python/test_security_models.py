"""Model packages never run code the user did not allow: TorchScript trust, hostile archives, links,
special files and code-carrying pickles, through the command line as a user would meet them.

Every hostile payload here writes (or tries to write) a marker file; each test checks that the
marker is untouched afterwards.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from segmentai_core.cli.main import main
from conftest import manifest_dict, write_raw_package

torch.set_num_threads(1)
MARKER_BYTES = b"\0\0\0\0"


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """A private SEGMENTAI_HOME: trust decisions and imports of one test never reach another."""
    monkeypatch.setenv("SEGMENTAI_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture()
def marker(tmp_path) -> Path:
    path = tmp_path / "marker.bin"
    path.write_bytes(MARKER_BYTES)
    return path


def _script_bytes(module: torch.nn.Module) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(module)
        buffer = io.BytesIO()
        torch.jit.save(scripted, buffer)
    return buffer.getvalue()


def _writer(marker: Path):
    """A module whose forward overwrites ``marker`` through aten::from_file (the reported attack)."""
    class Writes(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.target = str(marker)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            mapped = torch.from_file(self.target, shared=True, size=4, dtype=torch.uint8)
            mapped.copy_(torch.tensor([72, 73, 33, 10], dtype=torch.uint8))
            return torch.cat([x, x], dim=1) + mapped.sum().float() * 0

    return Writes()


def _loader_writer(marker: Path):
    """A module whose __setstate__ writes ``marker``: torch.jit.load itself would run it."""
    class WritesOnLoad(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.value = 1
            self.target = str(marker)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([x, x], dim=1)

        @torch.jit.export
        def __getstate__(self) -> tuple[int, bool, str]:
            return (self.value, self.training, self.target)

        @torch.jit.export
        def __setstate__(self, state: tuple[int, bool, str]) -> None:
            self.target = state[2]
            mapped = torch.from_file(self.target, shared=True, size=4, dtype=torch.uint8)
            mapped.copy_(torch.tensor([66, 66, 66, 66], dtype=torch.uint8))
            self.value = state[0] + int(mapped.sum()) * 0
            self.training = state[1]

    return WritesOnLoad()


def _benign() -> bytes:
    module = torch.nn.Sequential(torch.nn.Conv3d(1, 2, 3, padding=1)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module, torch.zeros(1, 1, 16, 16, 16))
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer)
    return buffer.getvalue()


def _torchscript_package(folder: Path, data: bytes, model_id: str = "scripted") -> Path:
    manifest = manifest_dict(model_id=model_id)
    manifest["architecture"] = {"name": "TorchScript"}
    manifest["labels"] = {"1": manifest["labels"]["1"]}
    return write_raw_package(folder, manifest, data, "torchscript", name="model.pt")


@pytest.fixture()
def image_file(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    array = rng.normal(100, 10, (20, 20, 20)).astype(np.float32)
    array[6:14, 6:14, 6:14] += 80
    path = tmp_path / "image.nrrd"
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((1.0, 1.0, 1.0))
    sitk.WriteImage(image, str(path))
    return path


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# --- TorchScript: refused by default, checked when trusted ---------------------------------------

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.mark.parametrize("trust_code", [False, True])
def test_hostile_forward_never_writes_a_file(tmp_path, capsys, marker, image_file, trust_code):
    package = _torchscript_package(tmp_path / "evil", _script_bytes(_writer(marker)))
    out = tmp_path / "out.nii.gz"
    argv = ["segment", image_file, "-o", out, "--model", package, "--quiet"] + (["--trust-code"] if trust_code else [])
    code, _, err = _run(capsys, *argv)
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert ("torch.from_file" in err) if trust_code else ("segmentai models trust" in err)
    assert marker.read_bytes() == MARKER_BYTES and not out.exists()


def test_hostile_setstate_is_refused_before_loading(tmp_path, capsys, marker, image_file):
    package = _torchscript_package(tmp_path / "evil", _script_bytes(_loader_writer(marker)))
    code, _, err = _run(capsys, "segment", image_file, "-o", tmp_path / "o.nii.gz", "--model", package,
                        "--trust-code", "--quiet")
    assert code == 2 and "__setstate__" in err
    assert marker.read_bytes() == MARKER_BYTES
    # Trusting it is refused too: the static check runs before trust is recorded.
    code, _, err = _run(capsys, "models", "trust", package)
    assert code == 2 and "__setstate__" in err
    assert marker.read_bytes() == MARKER_BYTES


def test_hostile_torchscript_import_is_refused(tmp_path, capsys, marker, isolated_home):
    package = _torchscript_package(tmp_path / "evil", _script_bytes(_writer(marker)))
    code, _, err = _run(capsys, "models", "import", package)
    assert code == 2 and "torch.from_file" in err
    assert not (isolated_home / "models").exists() or not any((isolated_home / "models").iterdir())
    assert marker.read_bytes() == MARKER_BYTES


def test_benign_torchscript_runs_only_after_trust(tmp_path, capsys, image_file, isolated_home):
    package = _torchscript_package(tmp_path / "ok", _benign(), model_id="traced")
    code, out, _ = _run(capsys, "models", "import", package)
    assert code == 0 and "models trust traced" in out
    seg = tmp_path / "seg.nii.gz"
    code, _, err = _run(capsys, "segment", image_file, "-o", seg, "--model", "traced", "--quiet")
    assert code == 2 and "segmentai models trust traced" in err and not seg.exists()
    code, out, _ = _run(capsys, "models", "show", "traced")
    assert "refused until you trust it" in out
    code, out, _ = _run(capsys, "models", "trust", "traced")
    assert code == 0 and "trusted traced@1.0.0" in out
    assert json.loads((isolated_home / "trusted-code.json").read_text())["trusted"]
    code, _, err = _run(capsys, "segment", image_file, "-o", seg, "--model", "traced", "--quiet")
    assert code == 0, err
    assert seg.exists()
    code, out, _ = _run(capsys, "models", "untrust", "traced")
    assert code == 0 and "no longer trusted" in out
    code, _, err = _run(capsys, "segment", image_file, "-o", tmp_path / "again.nii.gz", "--model", "traced", "--quiet")
    assert code == 2 and "refuses it unless you trust it" in err


def test_trust_is_by_content_not_by_name(tmp_path, capsys, marker, isolated_home):
    """Trusting a model and then swapping its file for another program (same id) does not carry over."""
    from segmentai_core.errors import ModelError
    from segmentai_core.models.package import ModelPackage

    data = _benign()
    good = _torchscript_package(tmp_path / "good", data, model_id="swap")
    assert _run(capsys, "models", "trust", good)[0] == 0
    copy = _torchscript_package(tmp_path / "copy", data, model_id="swap")
    assert ModelPackage.open(copy).code_trusted  # same bytes: same trust
    changed = _script_bytes(torch.nn.Sequential(torch.nn.Conv3d(1, 2, 1)))
    other = _torchscript_package(tmp_path / "other", changed, model_id="swap")
    with pytest.raises(ModelError, match="refuses it unless you trust it"):
        ModelPackage.open(other).load_network()


def test_weights_only_state_dicts_need_no_trust(tmp_path, capsys, tiny_package):
    code, _, err = _run(capsys, "models", "trust", tiny_package.folder)
    assert code == 2 and "needs no trust" in err


# --- import: links, special files, pickles ---------------------------------------------------------

def test_import_refuses_links_and_copies_nothing(tmp_path, capsys, tiny_package, isolated_home):
    import shutil

    secret = tmp_path / "secret.txt"
    secret.write_text("do not copy me")
    for name, make in (("file-link", lambda p: (p / "NOTES.txt").symlink_to(secret)),
                       ("dir-link", lambda p: (p / "extra").symlink_to(tmp_path)),
                       ("loop", lambda p: (p / "loop").symlink_to("."))):
        folder = tmp_path / name
        shutil.copytree(tiny_package.folder, folder)
        make(folder)
        code, _, err = _run(capsys, "models", "import", folder)
        assert code == 2 and "is a link" in err and len(err.strip().splitlines()) == 1, err
    models = isolated_home / "models"
    assert not models.exists() or not [p for p in models.iterdir() if not p.name.startswith(".")]
    assert not any("do not copy me" in p.read_text(errors="ignore") for p in tmp_path.rglob("NOTES.txt")
                   if p.is_file() and not p.is_symlink())


def test_fifo_weights_do_not_hang(tmp_path, capsys, tiny_package):
    import shutil

    folder = tmp_path / "fifo"
    shutil.copytree(tiny_package.folder, folder)
    weights = folder / tiny_package.manifest.weights_file
    weights.unlink()
    os.mkfifo(weights)
    for argv in (["models", "show", folder, "--verify"], ["models", "import", folder]):
        code, _, err = _run(capsys, *argv)
        assert code == 2 and "not a regular file" in err


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch /tmp/segmentai-pickle-ran",))


@pytest.mark.parametrize("fmt,name", [("state_dict", "model.pt"), ("safetensors", "model.safetensors")])
def test_import_refuses_code_carrying_pickles(tmp_path, capsys, fmt, name, isolated_home):
    ran = Path("/tmp/segmentai-pickle-ran")
    if ran.exists():
        ran.unlink()
    payload = pickle.dumps({"weight": _Payload()})
    package = write_raw_package(tmp_path / "pickled", manifest_dict(), payload, fmt, name=name)
    for argv in (["models", "import", package], ["models", "show", package, "--verify"]):
        code, out, err = _run(capsys, *argv)
        assert code == 2 and "verified" not in out, (out, err)
    assert not ran.exists()
    models = isolated_home / "models"
    assert not models.exists() or not [p for p in models.iterdir() if not p.name.startswith(".")]
