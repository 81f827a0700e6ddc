"""Axis order is converted in one place: ``segmentai_core/geometry.py`` (and the manifest's ``*_kji``
accessors, which call it). Elsewhere in the core, no ``[..., ::-1]`` and no ``reversed()`` of a
spacing, size, patch, shape, divisor or axes."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np

import segmentai_core
from segmentai_core.geometry import Geometry, ijk_axes_to_kji, ijk_to_kji, kji_to_ijk, points_ijk_to_kji

CORE = Path(segmentai_core.__file__).parent
AXIS_WORDS = ("spacing", "size", "patch", "shape", "divisor", "axes", "ijk", "kji", "xyz")
EXEMPT = {"geometry.py", "phantoms.py"}  # phantoms.py reverses a polyline, not axes


def _reversals(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Slice) and isinstance(node.step, ast.UnaryOp) and \
                isinstance(node.step.op, ast.USub) and getattr(node.step.operand, "value", None) == 1:
            yield node.lineno, "[::-1]"
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "reversed" and node.args:
            text = ast.unparse(node.args[0]).lower()
            if any(word in text for word in AXIS_WORDS):
                yield node.lineno, f"reversed({text})"


def test_axis_order_is_reversed_only_in_geometry():
    offenders = [f"{p.relative_to(CORE)}:{line} {what}" for p in sorted(CORE.rglob("*.py"))
                 if p.name not in EXEMPT for line, what in _reversals(p)]
    assert offenders == []


def test_helpers():
    assert ijk_to_kji((1, 2, 3)) == (3, 2, 1) and kji_to_ijk([3, 2, 1]) == (1, 2, 3)
    assert ijk_axes_to_kji([0, 2], 3) == (2, 0) and ijk_axes_to_kji([0], 2) == (1,)
    geometry = Geometry.create((4, 5, 6), (0.5, 0.7, 3.0))
    assert geometry.spacing_kji == (3.0, 0.7, 0.5) and ijk_to_kji(geometry.size_ijk) == geometry.shape
    points = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert points_ijk_to_kji(points).tolist() == [[3.0, 2.0, 1.0], [6.0, 5.0, 4.0]]
