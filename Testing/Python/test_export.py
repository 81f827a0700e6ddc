"""Export: TorchScript packages (with and without int8) load back in the engine; ONNX is explained."""

from __future__ import annotations

import pytest
import torch

from conftest import make_tiny_package
from segmentai_core.errors import ModelError
from segmentai_core.inference.engine import Segmenter
from segmentai_core.metrics import dice
from segmentai_core.models.package import ModelPackage
from segmentai_core.phantoms import blob_phantom

torch.set_num_threads(1)


@pytest.mark.parametrize("quantize", [None, "int8"])
def test_torchscript_export_loads_in_engine(tmp_path, quantize):
    from segmentai_train.cli import main
    from segmentai_train.export import export_model

    source = make_tiny_package(tmp_path / "tiny")
    report = export_model(source, tmp_path / "ts", fmt="torchscript", quantize=quantize)
    assert report["max_abs_logit_diff"] < 1e-4
    assert report["quantized_layers"] == 0  # a convolutional U-Net has no Linear layer to quantise
    package = ModelPackage.open(tmp_path / "ts")
    assert package.manifest.architecture_name == "TorchScript" and package.manifest.weights_format == "torchscript"
    assert package.manifest.parent == {"id": "tiny-test", "version": "0.0.1"}
    image, _ = blob_phantom(shape=(40, 48, 44), seed=3)
    exported = Segmenter(package, device="cpu").segment(image).labelmap.array
    original = Segmenter(source, device="cpu").segment(image).labelmap.array
    assert exported.shape == original.shape
    assert dice(exported == 1, original == 1) > 0.95  # windows (TorchScript) vs whole volume: same network
    assert main(["export", str(source.folder), "--out", str(tmp_path / "ts"), "--format", "torchscript"]) == 2


def test_onnx_export_or_clear_error(tmp_path):
    from segmentai_train.export import export_model

    source = make_tiny_package(tmp_path / "tiny")
    try:
        import onnx  # noqa: F401  (optional: segmentai-train[onnx])
    except ImportError:
        with pytest.raises(ModelError, match="pip install onnx"):
            export_model(source, tmp_path / "onnx", fmt="onnx")
        assert not (tmp_path / "onnx").exists()
        return
    report = export_model(source, tmp_path / "onnx", fmt="onnx")
    assert (tmp_path / "onnx" / "model.onnx").stat().st_size > 0 and report["format"] == "onnx"
