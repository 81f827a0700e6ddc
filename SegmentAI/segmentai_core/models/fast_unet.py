"""A residual U-Net in plain PyTorch whose parameters are laid out like MONAI's ``UNet``.

Why: importing MONAI costs seconds (its package imports transforms, data, apps and, when it is
installed, pytorch-ignite), which made every cold ``segmentai refine`` or ``segment`` call pay
several seconds before the first voxel. The bundled models are MONAI ``UNet``s with residual units;
this module builds the same network from ``torch.nn`` alone, with the same module names, so the
same state dict loads strictly and the same numbers come out (checked against MONAI in
``Testing/Python/test_fast_unet.py``). Configurations outside the supported subset (other
activations, dropout, norms given with arguments, another ADN order) return ``None`` and the
caller builds MONAI's class instead.

Structure (per level, outermost first): a down block (residual unit with stride), a skip
connection around the deeper levels (concatenation on channels), an up block (transposed
convolution, then a one-subunit residual unit; the outermost one ends on a bare convolution).
A residual unit is ``subunits`` convolutions, each followed by norm, dropout and PReLU, plus a
shortcut (a convolution when the stride or the channel count changes).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Dict, Optional, Sequence, Union

import torch
from torch import nn

__all__ = ["FastUNet", "build_fast_unet"]

Stride = Union[int, Sequence[int]]

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_CONV_T = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_NORM = {("batch", 2): nn.BatchNorm2d, ("batch", 3): nn.BatchNorm3d,
         ("instance", 2): nn.InstanceNorm2d, ("instance", 3): nn.InstanceNorm3d}


def _prod(stride: Stride) -> int:
    values = list(stride) if isinstance(stride, (list, tuple)) else [stride]
    product = 1
    for value in values:
        product *= int(value)
    return product


def _minus_one(stride: Stride) -> Stride:
    return tuple(int(s) - 1 for s in stride) if isinstance(stride, (list, tuple)) else int(stride) - 1


def _strides(stride: Stride) -> Stride:
    return tuple(int(s) for s in stride) if isinstance(stride, (list, tuple)) else int(stride)


class _Skip(nn.Module):
    """``cat([x, submodule(x)])`` on the channel axis (MONAI's SkipConnection, mode "cat")."""

    def __init__(self, submodule: nn.Module) -> None:
        super().__init__()
        self.submodule = submodule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.submodule(x)], dim=1)


class _Residual(nn.Module):
    """``conv(x) + residual(x)``: the attribute names are MONAI's ResidualUnit's."""

    def __init__(self, conv: nn.Sequential, residual: nn.Module) -> None:
        super().__init__()
        self.conv = conv
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.residual(x)


class FastUNet(nn.Module):
    """Residual U-Net with MONAI ``UNet``'s module names (``model.0.conv.unit0.conv.weight``...)."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, channels: Sequence[int],
                 strides: Sequence[Stride], kernel_size: int = 3, up_kernel_size: int = 3, num_res_units: int = 2,
                 norm: str = "instance", dropout: Optional[float] = 0.0, bias: bool = True) -> None:
        super().__init__()
        if len(channels) < 2 or len(strides) != len(channels) - 1 or num_res_units < 1:
            raise ValueError("FastUNet needs >= 2 channels, one stride fewer, and num_res_units >= 1")
        self.dims, self.kernel, self.up_kernel = spatial_dims, kernel_size, up_kernel_size
        self.units, self.norm, self.bias = num_res_units, norm, bias
        self.with_dropout = dropout is not None
        self.model = self._level(in_channels, out_channels, list(channels), list(strides), top=True)

    # -- building blocks --------------------------------------------------------------------

    def _adn(self, channels: int) -> nn.Sequential:
        parts = [("N", _NORM[(self.norm, self.dims)](channels))]
        if self.with_dropout:
            parts.append(("D", nn.Identity()))  # dropout 0: no parameters, no effect
        parts.append(("A", nn.PReLU()))
        return nn.Sequential(OrderedDict(parts))

    def _conv(self, cin: int, cout: int, stride: Stride, kernel: int, conv_only: bool = False,
              transposed: bool = False) -> nn.Sequential:
        pad = (kernel - 1) // 2
        if transposed:
            conv = _CONV_T[self.dims](cin, cout, kernel, stride=_strides(stride), padding=pad,
                                      output_padding=_minus_one(stride), bias=self.bias)
        else:
            conv = _CONV[self.dims](cin, cout, kernel, stride=_strides(stride), padding=pad, bias=self.bias)
        parts = [("conv", conv)]
        if not conv_only:
            parts.append(("adn", self._adn(cout)))
        return nn.Sequential(OrderedDict(parts))

    def _residual_unit(self, cin: int, cout: int, stride: Stride, subunits: int,
                       last_conv_only: bool = False) -> _Residual:
        units = nn.Sequential()
        channels, step = cin, stride
        for index in range(subunits):
            conv_only = last_conv_only and index == subunits - 1
            units.add_module(f"unit{index}", self._conv(channels, cout, step, self.kernel, conv_only=conv_only))
            channels, step = cout, 1
        residual: nn.Module = nn.Identity()
        if _prod(stride) != 1 or cin != cout:
            same = _prod(stride) == 1
            kernel = 1 if same else self.kernel
            residual = _CONV[self.dims](cin, cout, kernel, _strides(stride), 0 if same else (self.kernel - 1) // 2,
                                        bias=self.bias)
        return _Residual(units, residual)

    def _level(self, cin: int, cout: int, channels: list, strides: list, top: bool) -> nn.Sequential:
        c, s = channels[0], strides[0]
        if len(channels) > 2:
            deeper = self._level(c, c, channels[1:], strides[1:], top=False)
            up_in = 2 * c
        else:
            deeper = self._residual_unit(c, channels[1], 1, self.units)  # the bottom, stride 1
            up_in = c + channels[1]
        down = self._residual_unit(cin, c, s, self.units)
        up = nn.Sequential(self._conv(up_in, cout, s, self.up_kernel, transposed=True),
                           self._residual_unit(cout, cout, 1, 1, last_conv_only=top))
        return nn.Sequential(down, _Skip(deeper), up)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


_SUPPORTED = {"channels", "strides", "kernel_size", "up_kernel_size", "num_res_units", "act", "norm", "dropout",
              "bias", "adn_ordering"}


def build_fast_unet(spatial_dims: int, in_channels: int, out_channels: int,
                    args: Dict[str, Any]) -> Optional[FastUNet]:
    """The plain-PyTorch network for MONAI ``UNet`` arguments ``args``, or None outside the supported subset."""
    if spatial_dims not in (2, 3) or set(args) - _SUPPORTED:
        return None
    act = args.get("act", "PRELU")
    norm = args.get("norm", "INSTANCE")
    dropout = args.get("dropout", 0.0)
    kernel, up_kernel = args.get("kernel_size", 3), args.get("up_kernel_size", 3)
    if not (isinstance(act, str) and act.upper() == "PRELU") or not isinstance(norm, str):
        return None
    if norm.lower() not in ("batch", "instance") or args.get("adn_ordering", "NDA") != "NDA":
        return None
    if dropout not in (None, 0, 0.0) or not all(isinstance(k, int) and k % 2 == 1 for k in (kernel, up_kernel)):
        return None
    if int(args.get("num_res_units", 0)) < 1 or not isinstance(args.get("bias", True), bool):
        return None
    try:
        return FastUNet(spatial_dims, in_channels, out_channels, [int(c) for c in args["channels"]],
                        list(args["strides"]), kernel_size=kernel, up_kernel_size=up_kernel,
                        num_res_units=int(args["num_res_units"]), norm=norm.lower(), dropout=dropout,
                        bias=args.get("bias", True))
    except (KeyError, TypeError, ValueError):
        return None
