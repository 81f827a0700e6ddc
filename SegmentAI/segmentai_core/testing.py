"""The tiny model package the tests build: shared by pytest (``Testing/Python/conftest.py``) and the MRML
layer's cases that Slicer's self-test runs (``segmentai_mrml/tests/scene.py``).

A valid package with a random-weight 3-level UNet: fast on CPU, and its output still depends on the image.
torch is imported on first use only.
"""

from __future__ import annotations

import copy
from pathlib import Path

__all__ = ["TINY_MANIFEST", "make_tiny_package"]

TINY_MANIFEST = {
    "schema_version": 1,
    "id": "tiny-test",
    "version": "0.0.1",
    "name": "Tiny test network",
    "task": "tests only: random weights",
    "modality": "any",
    "dimensions": 3,
    "architecture": {"name": "UNet", "args": {"channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 1,
                                              "norm": "batch"}},
    "input_channels": ["image"],
    "labels": {"1": {"name": "Object", "color": [1.0, 0.2, 0.2]}},
    "preprocessing": {"orientation": "RAS", "target_spacing": [2.0, 2.0, 2.0],
                      "normalization": {"type": "zscore"}},
    "inference": {"patch_size": [32, 32, 32], "overlap": 0.25, "mirror_axes": [0, 1, 2]},
    "postprocessing": {"largest_component": False, "fill_holes": False},
    "weights": {"file": "model.safetensors", "format": "safetensors", "sha256": "0" * 64},
    "license": {"code": "Apache-2.0", "weights": "Apache-2.0"},
    "training_data": "none (random weights)",
    "accuracy": [],
}
"""The tiny package's manifest (``weights.sha256`` is filled in when the package is written)."""


def make_tiny_package(folder: Path, seed: int = 0, **overrides):
    """Write the tiny package into ``folder`` (top-level manifest fields replaced by ``overrides``);
    returns the :class:`~segmentai_core.models.package.ModelPackage`."""
    import torch

    from segmentai_core.models.networks import build_network
    from segmentai_core.models.package import write_model_package

    manifest = copy.deepcopy(TINY_MANIFEST)
    manifest.update(overrides)
    torch.manual_seed(seed)
    network = build_network(manifest["architecture"], 3, 1, len(manifest["labels"]) + 1)
    return write_model_package(folder, manifest, network.state_dict())
