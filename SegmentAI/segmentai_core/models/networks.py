"""Builds the network a manifest names; the rules per architecture are rows of :mod:`.architectures`.

Kept as the import place of :func:`build_network` and :func:`size_divisor` (the training package
and the tests use it); ``ARCHITECTURES`` is the table itself (its keys are the accepted names).
"""

from __future__ import annotations

from .architectures import ARCHITECTURES, build_network, size_divisor

__all__ = ["ARCHITECTURES", "build_network", "size_divisor"]
