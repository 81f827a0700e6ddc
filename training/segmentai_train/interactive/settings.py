"""What the shipped interactive model is: id, working grid, patch, network and the manifest's
``x-interactive`` block. Shared by its recipe (``recipes/interactive.py``) and its package writer
(``interactive/package.py``), so neither imports the other."""

from __future__ import annotations

__all__ = ["MODEL_ID", "SPACING_MM", "PATCH", "ARCHITECTURE", "INTERACTIVE"]

MODEL_ID = "interactive-unet"
SPACING_MM = 1.5
PATCH = 48  # 48³ patches: a CPU training step costs about 2.4x less than at 64³
ARCHITECTURE = {
    "name": "UNet",
    # Batch norm so that eval mode does not depend on the working grid's extent (recalibrated at the end).
    "args": {"channels": [8, 16, 32, 64, 128], "strides": [2, 2, 2, 2], "num_res_units": 2, "norm": "batch"},
}
# A first click sees at least 72 mm around it (48 working voxels): at 48 mm the object was often cut by
# the window's edge (measured: +0.03 mean Dice after one click on unseen atlas structures at 72 mm).
# One test-time flip (mirror along i, averaged): +0.016 / +0.056 mean Dice after 10 clicks on unseen atlas
# structures / lesions with 1.2.0, for 0.02 s more per click on 2 CPU cores (bench_interactive.py).
INTERACTIVE = {"max_size": 96, "margin_mm": 12.0, "min_extent_mm": 72.0, "max_zoom": 2.0,
               "guidance_sigma_voxels": 1.5, "guidance": "gaussian", "test_time_flips": 1}
