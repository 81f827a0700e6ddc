"""Shared fixtures: tiny model packages with random weights, and the bundled default model."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "SegmentAI"))

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


def make_tiny_package(folder: Path, seed: int = 0, **overrides):
    """A model package with random weights whose output still depends on the image (bias toward bright)."""
    import torch

    from segmentai_core.models.networks import build_network
    from segmentai_core.models.package import write_model_package

    manifest = copy.deepcopy(TINY_MANIFEST)
    manifest.update(overrides)
    torch.manual_seed(seed)
    network = build_network(manifest["architecture"], 3, 1, len(manifest["labels"]) + 1)
    return write_model_package(folder, manifest, network.state_dict())


@pytest.fixture(scope="session")
def tiny_package(tmp_path_factory):
    return make_tiny_package(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="session")
def default_package():
    from segmentai_core.models.registry import ModelRegistry

    return ModelRegistry().default()


@pytest.fixture(scope="session")
def nnunet_model(tmp_path_factory) -> Path:
    """A tiny nnU-Net v2 model folder trained by nnunetv2 itself (fold_0 trained, fold_1 perturbed), built once
    per session (``nnunet_tiny`` caches it: nnunetv2 fixes its folders at first import)."""
    pytest.importorskip("nnunetv2", reason="nnunetv2 is a test dependency of the nnU-Net importer")
    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    import nnunet_tiny

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return nnunet_tiny.build_tiny_model(tmp_path_factory.mktemp("nnunet"), epochs=8, iterations=10)
    finally:
        torch.set_num_threads(threads)
