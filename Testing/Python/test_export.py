"""Export: TorchScript packages (with and without int8) load back in the engine; ONNX is explained."""

from __future__ import annotations

import copy

import pytest
import torch

from conftest import make_tiny_package
from segmentai_core.errors import ModelError
from segmentai_core.inference.engine import Segmenter
from segmentai_core.metrics import dice
from segmentai_core.models.package import ModelPackage
from segmentai_core.phantoms import blob_phantom

torch.set_num_threads(1)


def test_torchscript_export_loads_in_engine(tmp_path):
    from segmentai_train.cli import main
    from segmentai_train.export import export_model

    source = make_tiny_package(tmp_path / "tiny")
    report = export_model(source, tmp_path / "ts", fmt="torchscript")
    assert report["max_abs_logit_diff"] < 1e-4
    assert report["quantized_layers"] == 0
    package = ModelPackage.open(tmp_path / "ts")
    package.allow_code()  # TorchScript is code: trusted explicitly (the user's --trust-code)
    assert package.manifest.architecture_name == "TorchScript" and package.manifest.weights_format == "torchscript"
    assert package.manifest.parent == {"id": "tiny-test", "version": "0.0.1"}
    image, _ = blob_phantom(shape=(40, 48, 44), seed=3)
    exported = Segmenter(package, device="cpu").segment(image).labelmap.array
    original = Segmenter(source, device="cpu").segment(image).labelmap.array
    assert exported.shape == original.shape
    assert dice(exported == 1, original == 1) > 0.95  # windows (TorchScript) vs whole volume: same network
    assert main(["export", str(source.folder), "--out", str(tmp_path / "ts"), "--format", "torchscript"]) == 2


def test_int8_on_a_convolutional_unet_is_refused_in_one_line(tmp_path, capsys):
    """Dynamic int8 quantises Linear layers only; a U-Net has none, so the 'int8' file would be byte-identical
    to the plain export (issue 16, item 2). The command refuses in one line and writes nothing."""
    from segmentai_train.cli import main
    from segmentai_train.export import export_model, quantize_int8

    source = make_tiny_package(tmp_path / "tiny")
    network = source.load_network("cpu")
    plain, quantized = network.state_dict(), quantize_int8(copy.deepcopy(network))[0].state_dict()
    assert plain.keys() == quantized.keys()  # no packed int8 weights anywhere: every tensor the same bytes
    assert all(plain[k].numpy().tobytes() == quantized[k].numpy().tobytes() for k in plain)
    with pytest.raises(ModelError, match="would change nothing.*no Linear layer"):
        export_model(source, tmp_path / "int8", quantize="int8")
    assert not (tmp_path / "int8").exists()
    capsys.readouterr()
    assert main(["export", str(source.folder), "--quantize", "int8", "--out", str(tmp_path / "int8")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1
    assert "int8" in captured.err and not (tmp_path / "int8").exists()


def test_int8_export_the_engine_would_refuse_is_not_written(tmp_path, capsys):
    """A network with Linear layers (a small SwinUNETR) does get quantised, but quantised TorchScript keeps its
    packed weights in registered C++ classes, which the engine's code checks refuse: the export says so in one
    line and writes nothing (no folder, no staging folder), never an 'int8' package the engine cannot run."""
    from segmentai_train.cli import main
    from segmentai_train.export import quantizable_layers

    swin = {"name": "SwinUNETR", "args": {"feature_size": 12, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 1, 1]}}
    source = make_tiny_package(tmp_path / "swin", architecture=swin,
                               inference={"patch_size": [64, 64, 64], "overlap": 0.25, "mirror_axes": []})
    assert quantizable_layers(source.load_network("cpu")) > 0
    assert main(["export", str(source.folder), "--quantize", "int8", "--out", str(tmp_path / "int8")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1
    assert "export not written" in captured.err and "torch.classes" in captured.err
    assert not (tmp_path / "int8").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".int8.")]


def test_onnx_export_or_clear_error(tmp_path):
    from segmentai_train.export import export_model

    source = make_tiny_package(tmp_path / "tiny")
    try:
        import onnx  # noqa: F401  (optional: segmentai-train[onnx])
    except ImportError:
        with pytest.raises(ModelError, match=r"pip install 'segmentai-train\[onnx\]'"):
            export_model(source, tmp_path / "onnx", fmt="onnx")
        assert not (tmp_path / "onnx").exists()
        return
    report = export_model(source, tmp_path / "onnx", fmt="onnx")
    assert (tmp_path / "onnx" / "model.onnx").stat().st_size > 0 and report["format"] == "onnx"
