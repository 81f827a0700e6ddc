"""Networks trained on arrays in (x, y, z) order, run by an engine whose arrays are (k, j, i).

A 3D convolution network is not invariant to permuting its input axes: a network trained by
MONAI (whose image arrays are indexed ``[x, y, z]``) must see the same layout here. The adapter
reverses the spatial axes on the way in and back on the way out, so the rest of the engine,
sliding windows included, keeps its single (k, j, i) convention.
"""

from __future__ import annotations

__all__ = ["AXIS_ORDERS", "adapt_axis_order"]

AXIS_ORDERS = ("kji", "ijk")


def adapt_axis_order(network, axis_order: str):
    """``network`` itself for ``"kji"``; for ``"ijk"`` a module that reverses the spatial axes around it."""
    import torch

    if axis_order == "kji":
        return network
    if axis_order != "ijk":
        raise ValueError(f"unknown axis order {axis_order!r} (known: {', '.join(AXIS_ORDERS)})")

    class ReversedSpatialAxes(torch.nn.Module):
        """Feeds ``inner`` (B, C, i, j, k) and returns its output as (B, C', k, j, i)."""

        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            spatial = list(range(x.ndim - 1, 1, -1))
            out = self.inner(x.permute(0, 1, *spatial).contiguous())
            return out.permute(0, 1, *spatial).contiguous()

    return ReversedSpatialAxes(network).eval()
