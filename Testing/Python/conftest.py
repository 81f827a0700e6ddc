"""Shared fixtures and helpers: tiny model packages with random weights (``segmentai_core.testing``, the
package Slicer's self-test builds too), the bundled default model, a tiny nnU-Net model."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "SegmentAI"))

from segmentai_core.testing import TINY_MANIFEST, make_tiny_package  # noqa: E402 - after the path is set

__all__ = ["ROOT", "TINY_ARGS", "TINY_MANIFEST", "env", "fresh_python_json", "make_dataset", "make_tiny_package",
           "manifest_dict", "write_raw_package"]


# --- helpers shared by the test files (import them from conftest, not from another test file) -------------

TINY_ARGS = {
    "UNet": {"channels": [4, 8], "strides": [2], "num_res_units": 1},
    "AttentionUnet": {"channels": [4, 8], "strides": [2]},
    "SwinUNETR": {"feature_size": 12, "depths": [1, 1, 1, 1]},
}


def manifest_dict(model_id="tiny-seg", version="1.0.0", architecture="UNet", dimensions=3, patch=None) -> dict:
    """A complete, valid manifest (weights are filled in by write_model_package)."""
    # SwinUNETR needs multiples of 32, and more than one voxel at its 1/32 bottleneck (instance norm).
    patch = patch or ([64, 32, 32] if architecture == "SwinUNETR" else [16] * dimensions)
    return {
        "schema_version": 1,
        "id": model_id,
        "version": version,
        "name": "Tiny test model",
        "task": "segments bright blobs",
        "modality": "MR",
        "dimensions": dimensions,
        "architecture": {"name": architecture, "args": copy.deepcopy(TINY_ARGS.get(architecture, {}))},
        "input_channels": ["T1"],
        "labels": {
            "1": {
                "name": "Brain",
                "color": [0.9, 0.7, 0.6],
                "terminology": {
                    "category": {"scheme": "SCT", "value": "123037004", "meaning": "Anatomical Structure"},
                    "type": {"scheme": "SCT", "value": "12738006", "meaning": "Brain"},
                },
            },
            "2": {"name": "Lesion", "color": [1.0, 0.0, 0.0]},
        },
        "preprocessing": {
            "orientation": "RAS",
            "target_spacing": [1.0, 1.0, 1.5],
            "normalization": {"type": "zscore", "nonzero": True},
        },
        "inference": {"patch_size": patch, "overlap": 0.25, "mirror_axes": [0]},
        "postprocessing": {"largest_component": True},
        "license": {"code": "Apache-2.0", "weights": "CC-BY-4.0"},
        "training_data": [{"name": "synthetic", "license": "CC0-1.0", "cases": 4}],
        "accuracy": [{"dataset": "synthetic", "metric": "Dice", "value": 0.9, "label": "Brain"}],
        "parent": {"id": "tiny-base", "version": "0.9.0"},
    }


def write_raw_package(folder: Path, data: dict, weights: bytes, fmt: str, name: str = "weights.bin") -> Path:
    folder.mkdir(parents=True)
    (folder / name).write_bytes(weights)
    data = {**data, "weights": {"file": name, "format": fmt, "sha256": hashlib.sha256(weights).hexdigest()}}
    (folder / "manifest.json").write_text(json.dumps(data))
    return folder


def make_dataset(folder: Path, name: str = "Object", count: int = 3) -> Path:
    """A fine-tuning dataset of ``count`` blob phantoms labelled ``name`` (the tiny package's label)."""
    from segmentai_core.dataset import add_case
    from segmentai_core.phantoms import blob_phantom

    for seed in range(count):
        image, mask = blob_phantom(shape=(40, 48, 44), seed=seed)
        add_case(folder, image, mask, {1: name}, {"draft_model": "tiny-test@0.0.1"})
    return folder


def env() -> dict:
    """The environment of a child process that imports SegmentAI and the training package from this checkout."""
    paths = [str(ROOT / "SegmentAI"), str(ROOT / "training"), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p), "PYTHONUNBUFFERED": "1"}


def fresh_python_json(code: str):
    """Run ``code`` in a new interpreter (cwd ``SegmentAI/``, nothing imported yet) and parse the last
    line it prints as JSON: for checks of what a process imports."""
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT / "SegmentAI")
    return json.loads(out.stdout.strip().splitlines()[-1])


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
