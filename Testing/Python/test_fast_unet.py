"""The plain-PyTorch residual U-Net matches MONAI's UNet: same parameter names, initialisation and outputs."""

from __future__ import annotations

import pytest
import torch

from segmentai_core.models.fast_unet import FastUNet, build_fast_unet
from segmentai_core.models.networks import build_network

torch.set_num_threads(1)

CONFIGS = [
    (3, 4, 2, {"channels": [8, 16, 32, 64, 128], "strides": [2, 2, 2, 2], "num_res_units": 2, "norm": "batch"}),
    (3, 1, 2, {"channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 1, "norm": "batch"}),
    (3, 1, 3, {"channels": [8, 16, 32], "strides": [2, 2], "num_res_units": 2}),  # MONAI's default: instance norm
    (2, 2, 4, {"channels": [8, 16, 32], "strides": [2, [2, 1]], "num_res_units": 3, "norm": "INSTANCE",
               "kernel_size": 5}),
    (3, 1, 2, {"channels": [8, 16], "strides": [1], "num_res_units": 2, "norm": "batch", "dropout": None}),
]


@pytest.mark.parametrize("dims, cin, cout, args", CONFIGS)
def test_same_names_initialisation_and_outputs_as_monai(dims, cin, cout, args):
    from monai.networks.nets import UNet

    torch.manual_seed(3)
    reference = UNet(spatial_dims=dims, in_channels=cin, out_channels=cout, **args)
    torch.manual_seed(3)
    fast = build_fast_unet(dims, cin, cout, args)
    assert isinstance(fast, FastUNet)
    ref_state, fast_state = reference.state_dict(), fast.state_dict()
    assert list(ref_state) == list(fast_state)
    assert all(torch.equal(ref_state[k], fast_state[k]) for k in ref_state)  # same initialisation, same order
    generator = torch.Generator().manual_seed(1)
    state = {k: (torch.rand(v.shape, generator=generator) + 0.5 if "running_var" in k else
                 torch.randn(v.shape, generator=generator) * 0.3) if v.dtype.is_floating_point else v
             for k, v in ref_state.items()}
    reference.load_state_dict(state)
    fast.load_state_dict(state, strict=True)
    x = torch.randn((2, cin) + (32,) * dims, generator=generator)
    for mode in ("eval", "train"):
        getattr(reference, mode)()
        getattr(fast, mode)()
        with torch.no_grad():
            assert torch.allclose(reference(x), fast(x), atol=1e-5, rtol=1e-5), mode


@pytest.mark.parametrize("change", [{"dropout": 0.1}, {"act": "RELU"}, {"norm": ("instance", {"affine": True})},
                                    {"adn_ordering": "NA"}, {"kernel_size": [3, 3, 3]}])
def test_other_configurations_are_left_to_monai(change):
    from monai.networks.nets import UNet

    args = {"channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 1, **change}
    assert build_fast_unet(3, 1, 2, args) is None
    assert isinstance(build_network({"name": "UNet", "args": args}, 3, 1, 2), UNet)


def test_bundled_models_build_without_monai():
    """Loading a bundled model must not import MONAI (seconds of start-up for every cold command)."""
    import subprocess
    import sys

    from conftest import ROOT

    code = ("import sys, time; import torch; from segmentai_core.models.registry import ModelRegistry; "
            "r = ModelRegistry(); t = time.perf_counter(); "
            "[r.get(m).load_network('cpu') for m in ('brain-t1-extraction', 'interactive-unet')]; "
            "print(round(time.perf_counter() - t, 3), 'monai' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "PYTHONPATH": str(ROOT / "SegmentAI")})
    assert done.returncode == 0, done.stderr
    seconds, monai = done.stdout.split()
    assert monai == "False"
    print(f"both bundled models loaded in {seconds} s")
