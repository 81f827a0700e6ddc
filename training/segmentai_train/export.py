"""Export a model package: TorchScript (optionally with int8 dynamic quantisation) or ONNX.

A TorchScript export is a complete SegmentAI package (architecture ``TorchScript``, weights
format ``torchscript``) that the engine loads like any other. ``torch.ao.quantization
.quantize_dynamic`` only quantises ``Linear`` (and recurrent) layers: a convolutional U-Net has
none, so ``--quantize int8`` is refused for it (one line, nothing written) instead of writing a
file byte-identical to the plain export; for networks with ``Linear`` layers (SwinUNETR) the
report says how many were quantised, and convolutions stay float32. The engine cannot run ONNX
files (the manifest schema has no ONNX weights format): an ONNX export is a ``model.onnx`` plus
the source manifest for other runtimes, not a SegmentAI package; it needs the optional extra
``segmentai-train[onnx]``.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Union

import torch

from segmentai_core.errors import ModelError

__all__ = ["export_model", "quantize_int8", "quantizable_layers"]

ONNX_HINT = "pip install 'segmentai-train[onnx]'"


def quantizable_layers(network: torch.nn.Module) -> int:
    """How many layers dynamic int8 quantisation would change (``Linear`` only)."""
    return sum(isinstance(m, torch.nn.Linear) for m in network.modules())


def quantize_int8(network: torch.nn.Module) -> "tuple[torch.nn.Module, int]":
    """Dynamic int8 quantisation for CPU; returns the network and the number of layers quantised."""
    from torch.ao.quantization import quantize_dynamic

    count = quantizable_layers(network)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch deprecates torch.ao.quantization in favour of torchao
        quantized = quantize_dynamic(network, {torch.nn.Linear}, dtype=torch.qint8)
    return quantized, count


def _example(manifest) -> torch.Tensor:
    size = manifest.patch_size_kji
    return torch.zeros((1, len(manifest.input_channels)) + size)


def _publish(folder: Path, files: Dict[str, bytes], check: Optional[Callable[[Path], Any]] = None) -> Any:
    """Write ``files`` into a staging folder, run ``check`` on it, rename it to ``folder`` (whole or not at all).

    Returns what ``check`` returned: an export that the engine would refuse is never published.
    """
    from segmentai_core.io.staging import staged_folder

    with staged_folder(folder, "export") as staging:
        for name, data in files.items():
            (staging / name).write_bytes(data)
        return check(staging) if check is not None else None


def _load_export(folder: Path) -> torch.nn.Module:
    """Load a TorchScript export as the engine would; a refusal says the export is not written."""
    from segmentai_core.models.package import ModelPackage

    written = ModelPackage.open(folder).allow_code()  # traced here, from the source's weights, just now
    try:
        return written.load_network("cpu")
    except ModelError as error:
        raise ModelError(f"export not written: SegmentAI's engine would not load it ({error})") from error


def export_model(model: Union[str, Path, Any], out: Union[str, Path], fmt: str = "torchscript",
                 quantize: Optional[str] = None, version: Optional[str] = None) -> Dict[str, Any]:
    """Export ``model`` (id, folder or ModelPackage) to the folder ``out``; returns a report dict.

    The report holds the folder, format, file size, quantised layer count and the largest
    absolute difference of the exported network's logits from the source's on a test input.
    """
    from segmentai_core.models.manifest import ModelManifest
    from segmentai_core.models.package import ModelPackage
    from segmentai_core.models.registry import ModelRegistry

    if quantize is not None and quantize != "int8":
        raise ModelError(f"unknown quantisation '{quantize}' (int8 is supported)")
    if fmt not in ("torchscript", "onnx"):
        raise ModelError(f"unknown export format '{fmt}' (torchscript or onnx)")
    if fmt == "onnx":
        if quantize:
            raise ModelError("int8 quantisation is offered for TorchScript exports only")
        try:
            import onnx
        except ImportError as error:
            raise ModelError(f"ONNX export needs the optional 'onnx' package: {ONNX_HINT}") from error
    source = model if isinstance(model, ModelPackage) else ModelRegistry().get(str(model))
    manifest = source.manifest
    network = source.load_network("cpu").eval()
    quantized_layers = 0
    exported = network
    if quantize == "int8":
        if quantizable_layers(network) == 0:
            raise ModelError(
                f"--quantize int8 would change nothing: {manifest.full_id} "
                f"({manifest.architecture_name}) has no Linear layer, and dynamic int8 quantises Linear "
                "layers only (convolutions stay float32); export without --quantize")
        exported, quantized_layers = quantize_int8(copy.deepcopy(network))
    example = _example(manifest)
    generator = torch.Generator().manual_seed(0)
    probe = torch.randn(example.shape, generator=generator)
    out = Path(out)
    with torch.inference_mode():
        reference = network(probe)

    if fmt == "torchscript":
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(exported, example, check_trace=False)
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 deprecates TorchScript; files still load
            torch.jit.save(traced, buffer)
        data = buffer.getvalue()
        manifest_data = manifest.to_dict()
        manifest_data["architecture"] = {"name": "TorchScript"}
        manifest_data["weights"] = {"file": "model.pt", "format": "torchscript",
                                    "sha256": hashlib.sha256(data).hexdigest()}
        manifest_data["version"] = version or manifest.version
        manifest_data["parent"] = {"id": manifest.id, "version": manifest.version}
        note = f"TorchScript export of {manifest.full_id}" + (
            f"; int8 dynamic quantisation ({quantized_layers} Linear layers quantised, convolutions float32)"
            if quantize else "")
        manifest_data["notes"] = (note + ". " + (manifest.notes or ""))[:4000]
        manifest_data["x-export"] = {"format": "torchscript", "quantize": quantize,
                                     "quantized_layers": quantized_layers, "source_sha256": manifest.weights_sha256}
        ModelManifest.from_dict(manifest_data)  # never write an invalid manifest
        text = (json.dumps(manifest_data, indent=2, ensure_ascii=False) + "\n").encode()
        loaded = _publish(out, {"model.pt": data, "manifest.json": text}, check=_load_export)
    else:  # onnx ('onnx' imported above)
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            # The TorchScript-based exporter needs only 'onnx' and is fast; torch 2.13 marks it deprecated.
            warnings.simplefilter("ignore")
            torch.onnx.export(network, (example,), buffer, dynamo=False, input_names=["image"],
                              output_names=["logits"], dynamic_axes={"image": {2: "k", 3: "j", 4: "i"}})
        data = buffer.getvalue()
        onnx.checker.check_model(onnx.load_from_string(data))
        info = {"note": "ONNX export; SegmentAI's engine does not run ONNX files",
                "source_manifest": manifest.to_dict()}
        _publish(out, {"model.onnx": data, "export.json": (json.dumps(info, indent=2) + "\n").encode()})
        loaded = None

    max_diff = None
    timing = {}
    if loaded is not None:
        with torch.inference_mode():
            result = loaded(probe)
            max_diff = float((result - reference).abs().max())
            for name, net in (("source_s", network), ("exported_s", loaded)):
                t = time.perf_counter()
                net(probe)
                timing[name] = round(time.perf_counter() - t, 4)
    size = sum(p.stat().st_size for p in out.iterdir())
    return {"folder": out, "format": fmt, "quantize": quantize, "quantized_layers": quantized_layers,
            "size_bytes": size, "max_abs_logit_diff": max_diff, **timing}
