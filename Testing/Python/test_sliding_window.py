"""SegmentAI's sliding windows give MONAI's values exactly, and segmenting never imports MONAI."""

import pytest
import torch
from conftest import fresh_python_json

from segmentai_core.inference.sliding_window import importance_map, sliding_window_logits, window_starts

monai_inferers = pytest.importorskip("monai.inferers")


def _network(dims: int, classes: int = 3) -> torch.nn.Module:
    torch.manual_seed(0)
    conv = torch.nn.Conv3d if dims == 3 else torch.nn.Conv2d
    return torch.nn.Sequential(conv(1, 4, 3, padding=1), torch.nn.Tanh(), conv(4, classes, 3, padding=1)).eval()


CASES = [  # spatial size, window, batch, mode, overlap, sigma_scale
    ((37, 29, 41), (16, 16, 16), 4, "gaussian", 0.25, 0.125),
    ((37, 29, 41), (16, 12, 20), 1, "constant", 0.5, 0.125),
    ((10, 40, 33), (16, 16, 16), 3, "gaussian", 0.25, (0.125, 0.25, 0.2)),  # smaller than the window along k
    ((16, 16, 16), (16, 16, 16), 2, "gaussian", 0.25, 0.125),  # exactly one window
    ((7, 9, 5), (8, 8, 8), 4, "gaussian", 0.6, 0.125),  # smaller along every axis
    ((50, 23), (16, 16), 4, "gaussian", 0.25, 0.125),  # 2D
]


@pytest.mark.parametrize("shape, window, batch, mode, overlap, sigma", CASES)
def test_equals_monai_sliding_window_inference(shape, window, batch, mode, overlap, sigma):
    network = _network(len(shape))
    image = torch.randn((1, 1) + shape, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ours = sliding_window_logits(image, window, batch, network, overlap=overlap, mode=mode, sigma_scale=sigma)
        theirs = monai_inferers.sliding_window_inference(image, window, batch, network, overlap=overlap, mode=mode,
                                                         sigma_scale=sigma, sw_device="cpu", device="cpu")
    assert ours.shape == theirs.shape == (1, 3) + shape
    assert ours.dtype == torch.float32
    assert torch.equal(ours, torch.as_tensor(theirs))


def test_windows_cover_each_axis_and_end_at_its_edge():
    assert window_starts(100, 40, 0.25) == [0, 30, 60]
    assert window_starts(40, 40, 0.25) == [0]
    assert window_starts(41, 40, 0.99) == [0, 1]
    for size in range(8, 60):
        starts = window_starts(size, 8, 0.25)
        assert starts[0] == 0 and starts[-1] == size - 8 and starts == sorted(set(starts))
        assert all(b - a <= 6 for a, b in zip(starts, starts[1:]))  # no voxel left uncovered


def test_importance_map_peaks_at_the_centre_and_never_reaches_zero():
    weights = importance_map((9, 9, 9), "gaussian", 0.125)
    assert weights[4, 4, 4] == 1.0 and float(weights.min()) == pytest.approx(1e-3)
    assert torch.equal(importance_map((3, 4), "constant", 0.125), torch.ones(3, 4))
    with pytest.raises(ValueError, match="blend mode"):
        importance_map((3, 3), "median", 0.125)


def test_segment_does_not_import_monai():
    """MONAI's import (2.3-2.6 s here) was most of a first ``segment``'s network stage."""
    code = (
        "import json, sys\n"
        "import numpy as np\n"
        "from segmentai_core.geometry import Geometry\n"
        "from segmentai_core.volume import Volume\n"
        "from segmentai_core.inference.engine import Segmenter\n"
        "from segmentai_core.models.registry import ModelRegistry\n"
        "rng = np.random.default_rng(0)\n"
        "array = (rng.random((40, 48, 44)) * 100).astype(np.int16)\n"
        "volume = Volume(array, Geometry.create(array.shape, (2.0, 2.0, 2.0)))\n"
        "Segmenter(ModelRegistry().default(), device='cpu').segment(volume)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'monai')))\n"
    )
    assert fresh_python_json(code) == []
