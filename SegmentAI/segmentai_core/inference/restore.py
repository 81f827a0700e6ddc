"""From canonical-grid probabilities back to a label map on the input's own grid.

The label of an input voxel is the arg-max of the canonical probabilities interpolated linearly at
its centre (labels are never resampled directly: that would erode thin structures). Computing that
for every voxel and every class at full resolution is what made restore cost more than the network,
so :func:`restore_labels` does only the work that can change the answer:

1. The arg-max is taken on the (small) canonical grid, and each interpolation cell (the eight
   canonical voxels around a point) is marked with the class its corners share, or *mixed*. An
   input voxel in a uniform cell takes that class exactly: a convex combination of probability
   vectors that all favour one class favours it too.
2. Input voxels outside the box the non-background cells reach are background without any work;
   inside it, the *foreground box*, one lookup gives every voxel its cell.
3. Only the *mixed* voxels (a thin shell along boundaries) are interpolated, at their exact
   continuous canonical coordinates. When the grids' axes are parallel, cell by cell and row run
   by row run (:mod:`.restore_shell`: corner values gathered once per cell, k and j interpolated
   once per row); otherwise voxel by voxel in chunks through an affine map. With two classes one
   channel decides (``p1 > 0.5``): the result equals resampling every voxel. With more, the
   candidates are the classes that win at the voxel's eight corners; a class that wins at none of
   them could win between them only in a near-tie (tests: at most 0.5 % of foreground voxels on
   12-class noise fields; none on the bench's 104-class partition).

Work memory is the uint8/uint16 output, its box and one chunk of the shell: no float copy per class
at full resolution. :func:`probabilities_to_labels_reference` is the straightforward slab-by-slab
resampling of every class (the former implementation), kept for the parity tests and the benchmark.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

from ..geometry import Geometry, points_ijk_to_kji, points_kji_to_ijk
from ..progress import Progress
from ..volume import Volume
from .canonical import _sitk_resample
from .restore_shell import CellAxes, shell_classes

__all__ = ["probabilities_to_labels", "probabilities_to_labels_reference", "restore_labels"]

Box = Tuple[slice, slice, slice]


def _input_to_canonical_ijk(canonical: Geometry, original: Geometry) -> np.ndarray:
    """4×4 matrix from the input grid's continuous (i, j, k) to the canonical grid's (both are affine)."""
    return np.linalg.inv(canonical.ijk_to_lps_matrix()) @ original.ijk_to_lps_matrix()


def _canonical_to_input_box(canonical: Geometry, original: Geometry, lo_kji, hi_kji) -> Optional[Box]:
    """Input-grid slices holding every voxel within one canonical voxel of the canonical box [lo, hi]
    (inclusive); None when empty."""
    lo = np.asarray(lo_kji) - 1
    hi = np.asarray(hi_kji) + 1
    corners_kji = np.array([[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])],
                           dtype=float)
    inside = points_ijk_to_kji(original.lps_to_ijk(canonical.ijk_to_lps(points_kji_to_ijk(corners_kji))))
    start = np.maximum(np.floor(inside.min(axis=0)).astype(int) - 1, 0)
    stop = np.minimum(np.ceil(inside.max(axis=0)).astype(int) + 2, original.shape)
    if np.any(stop <= start):
        return None
    return tuple(slice(int(a), int(b)) for a, b in zip(start, stop))


class _AxisMap:
    """Input box → canonical grid when the grids' axes are parallel (any flips, scales, shifts).

    ``axes[d]`` is the canonical array axis along input array axis ``d`` and ``coords[d]`` the
    continuous canonical index of each box voxel along ``d``: the cell lookup then separates into
    three 1-D takes (several times faster than SimpleITK's general resampler), and the boundary
    shell into blocks of rows (:mod:`.restore_shell`).
    """

    def __init__(self, axes, coords, sizes) -> None:
        self.axes = axes
        self.coords = coords
        self.sizes = sizes  # canonical voxels along each box axis

    @classmethod
    def between(cls, canonical: Geometry, original: Geometry, box: Box) -> Optional["_AxisMap"]:
        matrix = _input_to_canonical_ijk(canonical, original)
        linear = matrix[:3, :3]
        significant = np.abs(linear) > 1e-9 * np.abs(linear).max()
        if not ((significant.sum(axis=0) == 1).all() and (significant.sum(axis=1) == 1).all()):
            return None  # oblique to each other
        axes, coords = [], []
        for d, part in enumerate(box):  # input array axis d is ijk axis 2 - d
            b = 2 - d
            a = int(np.argmax(significant[:, b]))
            index = np.arange(part.start, part.stop, dtype=np.float64)
            axes.append(2 - a)
            coords.append(linear[a, b] * index + matrix[a, 3])
        return cls(tuple(axes), coords, tuple(int(canonical.shape[a]) for a in axes))

    def tightened(self, box: Box, cell_box: Box) -> Tuple["_AxisMap", Optional[Box]]:
        """This map on the part of ``box`` whose voxels lie in the cells of ``cell_box`` (slices of
        the cell grid, see :func:`_cell_classes`), and that part; None when it holds no voxel.

        Every voxel outside those cells is background, so the rest of the box needs no work: the
        box grown by a canonical voxel around the cells was 14 % larger on a 512x512x300 head (a
        cc3d pass over it 10 ms longer). A voxel's cell is monotonic along each axis, so the
        voxels of a range of cells are a range."""
        parts, coords = [], []
        for d, (part, c) in enumerate(zip(box, self.coords)):
            span = cell_box[self.axes[d]]
            inside = (c >= -0.5) & (c < self.sizes[d] - 0.5)
            cell = np.floor(c) + 1
            hit = np.flatnonzero(inside & (cell >= span.start) & (cell < span.stop))
            if not hit.size:
                return self, None
            parts.append(slice(part.start + int(hit[0]), part.start + int(hit[-1]) + 1))
            coords.append(c[hit[0]:hit[-1] + 1])
        return _AxisMap(self.axes, coords, self.sizes), tuple(parts)

    def cells_into(self, cells: np.ndarray, target: np.ndarray) -> None:
        """Write the interpolation cell class of each box voxel into ``target`` (a view of the box):
        ``cells[floor(x) + 1]`` (see :func:`_cell_classes`), 0 outside the canonical grid."""
        moved = np.pad(cells.transpose(self.axes), 1)  # one more layer of 0 = outside
        index = []
        for c, n in zip(self.coords, cells.transpose(self.axes).shape):
            inside = (c >= -0.5) & (c < n - 1.5)  # ITK: [-0.5, size - 0.5) is inside the grid
            index.append(np.where(inside, np.clip(np.floor(c).astype(np.int64) + 2, 1, n), 0))
        # One axis at a time, the innermost first: the later takes copy whole rows, then whole
        # planes (memory-speed copies), where gathering single voxels along i last took 2-4x longer
        # (0.015-0.019 s against 0.004-0.010 s for a 170x350x372 box). The last axis goes plane by
        # plane straight into the output: no box-sized temporary to fill and copy (0.015 s).
        moved = np.take(moved, index[2], axis=2)
        moved = np.take(moved, index[1], axis=1)
        for plane, source in enumerate(index[0]):
            target[plane] = moved[source]


def argmax_classes(probabilities: np.ndarray) -> np.ndarray:
    """``argmax`` over the first axis (first class on ties), a running maximum: numpy's strided
    ``argmax(axis=0)`` over 105 classes takes 10x longer."""
    best = probabilities[0].copy()
    classes = np.zeros(best.shape, dtype=np.uint8 if probabilities.shape[0] < 255 else np.uint16)
    for c in range(1, probabilities.shape[0]):
        better = probabilities[c] > best
        np.copyto(best, probabilities[c], where=better)
        classes[better] = c
    return classes


def _cell_classes(winner: np.ndarray) -> "tuple[np.ndarray, int]":
    """Per interpolation cell, the class all its 8 corners share, or ``mixed`` when they differ.

    Cell ``c`` (shape ``winner.shape + 1``) has corners ``c - 1`` and ``c`` along each axis, edge
    voxels repeated: the cell of a point at continuous canonical index ``x`` is ``floor(x) + 1``, and
    its trilinear interpolation uses exactly that cell's corners. A convex combination of
    probability vectors that all favour one class favours it too, so a uniform cell decides
    without interpolating.
    """
    mixed = int(np.iinfo(winner.dtype).max)
    padded = np.pad(winner, 1, mode="edge")
    low = padded
    high = padded
    for axis in range(3):
        first = [slice(None)] * 3
        second = [slice(None)] * 3
        first[axis], second[axis] = slice(0, -1), slice(1, None)
        low = np.minimum(low[tuple(first)], low[tuple(second)])
        high = np.maximum(high[tuple(first)], high[tuple(second)])
    return np.where(low == high, low, mixed).astype(winner.dtype), mixed


def restore_labels(
    probabilities: np.ndarray,
    canonical: Geometry,
    original: Geometry,
    label_values: Sequence[int],
    progress: Progress,
) -> Tuple[np.ndarray, Optional[Box]]:
    """Arg-max label map on ``original``'s grid, and the input-grid box outside which it is 0 (or None)."""
    num_classes = probabilities.shape[0]
    dtype = np.uint8 if max(label_values, default=0) < 256 else np.uint16
    lookup = np.array([0] + list(label_values), dtype=dtype)
    out = np.zeros(original.shape, dtype=dtype)
    progress.update(0.0, "Resampling to the input grid")
    if num_classes == 2:  # p0 = 1 - p1 before and after linear interpolation: one channel decides
        winner = (probabilities[1] > 0.5).astype(np.uint8)
    else:
        winner = argmax_classes(probabilities)
    cells, mixed = _cell_classes(winner)
    cell_box = _occupied(cells)
    if cell_box is None:
        return out, None
    # Cell c spans canonical indices c - 1 .. c.
    box = _canonical_to_input_box(canonical, original, [s.start - 1 for s in cell_box],
                                  [s.stop - 1 for s in cell_box])
    if box is None:
        return out, None
    aligned = _AxisMap.between(canonical, original, box)
    if aligned is not None:
        aligned, box = aligned.tightened(box, cell_box)
        if box is None:
            return out, None  # the occupied cells hold no input voxel
    identity = np.array_equal(lookup, np.arange(len(lookup))) and winner.dtype == out.dtype
    if aligned is not None:  # written into the output itself when no lookup follows
        target, origin = (out, [s.start for s in box]) if identity else (np.empty(
            tuple(s.stop - s.start for s in box), winner.dtype), [0, 0, 0])
        # Two classes: the shell starts as background and only its foreground is written (restore_shell).
        uniform = np.where(cells == mixed, 0, cells) if num_classes == 2 else cells
        aligned.cells_into(uniform, target[tuple(slice(o, o + s.stop - s.start) for o, s in zip(origin, box))])
        progress.update(0.3, "Resampling to the input grid")
        # the boundary shell cell by cell, row run by row run
        shell_classes(probabilities, winner, cells, target, origin, mixed,
                      CellAxes(aligned.axes, aligned.coords, winner.shape))
        if not identity:
            out[box] = lookup[target]
        progress.update(1.0, "Resampling to the input grid")
        return out, box
    # Not axis-parallel: nearest cell centre (at canonical index c - 0.5) = floor(x) + 1.
    import SimpleITK as sitk

    cell_grid = Geometry.create(cells.shape, canonical.spacing, canonical.ijk_to_lps(np.full(3, -0.5)),
                                canonical.direction_matrix)
    # The outer cells reach half a voxel beyond the grid, where linear interpolation gives the
    # background default: let interpolation decide there.
    cells = cells.copy()
    for axis in range(3):
        for end in (0, -1):
            face = [slice(None)] * 3
            face[axis] = end
            edge = cells[tuple(face)]
            edge[edge != 0] = mixed
    target = original.cropped([s.start for s in box], [s.stop for s in box])
    decided = sitk.GetArrayFromImage(_sitk_resample(Volume(cells, cell_grid).to_sitk(), target,
                                                    sitk.sitkNearestNeighbor, 0.0))
    progress.update(0.3, "Resampling to the input grid")
    _oblique_shell(probabilities, winner, decided, mixed, box, canonical, original, progress)
    out[box] = decided if identity else lookup[decided]
    progress.update(1.0, "Resampling to the input grid")
    return out, box


def _occupied(cells: np.ndarray) -> Optional[Box]:
    """Slices of the cell grid holding every cell that is not uniform background (None if none):
    projections, not a list of the cells (4.7 ms on a 117x113x88 grid)."""
    occupied = cells > 0
    spans = []
    for axis in range(3):
        hit = np.flatnonzero(occupied.any(axis=tuple(a for a in range(3) if a != axis)))
        if not hit.size:
            return None
        spans.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(spans)


_CHUNK = 1 << 20
"""Boundary voxels interpolated at once (bounds the work memory to about 150 MB)."""


def _oblique_shell(probabilities: np.ndarray, winner: np.ndarray, decided: np.ndarray, mixed: int, box: Box,
                   canonical: Geometry, original: Geometry, progress: Progress) -> None:
    """Interpolate every ``mixed`` voxel of ``decided`` at its exact canonical coordinates, in chunks."""
    flat = np.flatnonzero(decided == mixed)  # the boundary shell, box-relative
    points = np.stack(np.unravel_index(flat, decided.shape), axis=1) if flat.size else np.empty((0, 3), np.intp)
    for first in range(0, len(points), _CHUNK):
        chunk = points[first:first + _CHUNK]
        coords = _affine_coords(chunk, box, canonical, original)
        decided[tuple(chunk.T)] = _interpolated_winner(probabilities, winner, coords).astype(decided.dtype)
        progress.update(0.3 + 0.7 * min(1.0, (first + _CHUNK) / len(points)), "Resampling to the input grid")


def _affine_coords(points: np.ndarray, box: Box, canonical: Geometry, original: Geometry) -> np.ndarray:
    """(3, N) continuous canonical (k, j, i) coordinates of box voxels ``points`` (N, 3), any orientation."""
    matrix = _input_to_canonical_ijk(canonical, original)
    ijk = points_kji_to_ijk(points + [s.start for s in box]).astype(np.float64)
    return points_ijk_to_kji(ijk @ matrix[:3, :3].T + matrix[:3, 3]).T


def _interpolated_winner(probabilities: np.ndarray, winner: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Arg-max class of the trilinearly interpolated probabilities at ``coords`` (3, N).

    Edge values continue within half a voxel of the grid; beyond, background (as ITK's resampler
    with the background default). The candidates are the classes that win at the point's eight
    corners: a class that wins at none of them can win between them only in a near-tie.
    """
    shape = winner.shape
    count = coords.shape[1]
    corners, weights = [], []
    inside = np.ones(count, dtype=bool)
    per_axis = []
    for c, n in zip(coords, shape):
        inside &= (c >= -0.5) & (c < n - 0.5)
        floor = np.floor(c)
        per_axis.append((np.clip(floor, 0, n - 1).astype(np.intp), np.clip(floor + 1, 0, n - 1).astype(np.intp),
                         (c - floor).astype(np.float32)))
    (l0, h0, w0), (l1, h1, w1), (l2, h2, w2) = per_axis
    for i0, f0 in ((l0, 1 - w0), (h0, w0)):
        for i1, f1 in ((l1, 1 - w1), (h1, w1)):
            for i2, f2 in ((l2, 1 - w2), (h2, w2)):
                corners.append((i0 * shape[1] + i1) * shape[2] + i2)
                weights.append(f0 * f1 * f2)
    flat = probabilities.reshape(probabilities.shape[0], -1)
    if probabilities.shape[0] == 2:
        p1 = flat[1]
        value = sum(w * p1[i] for w, i in zip(weights, corners))
        return (value > 0.5) & inside
    volume_size = flat.shape[1]
    everything = flat.reshape(-1)
    winners = [winner.reshape(-1)[i] for i in corners]

    def interpolated(classes: np.ndarray, where) -> np.ndarray:
        base = classes.astype(np.intp) * volume_size
        return sum(w[where] * everything[base + i[where]] for w, i in zip(weights, corners))

    # Most boundary points see two classes: the first corner's and the first other one.
    first = winners[0]
    second = first.copy()
    for candidate in winners[1:]:
        unset = second == first
        second[unset] = candidate[unset]
    everyone = slice(None)
    value_first, value_second = interpolated(first, everyone), interpolated(second, everyone)
    take_second = (value_second > value_first) | ((value_second == value_first) & (second < first))
    best_class = np.where(take_second, second, first)
    best = np.maximum(value_first, value_second)
    # Junctions of three or more classes: the remaining candidates, for those points only.
    for candidate in winners[1:]:
        where = np.flatnonzero((candidate != first) & (candidate != second))
        if where.size == 0:
            continue
        value = interpolated(candidate[where], where)
        better = (value > best[where]) | ((value == best[where]) & (candidate[where] < best_class[where]))
        best[where[better]] = value[better]
        best_class[where[better]] = candidate[where[better]]
    best_class[~inside] = 0
    return best_class


def probabilities_to_labels(
    probabilities: np.ndarray,
    canonical: Geometry,
    original: Geometry,
    label_values: Sequence[int],
    progress: Progress,
) -> np.ndarray:
    """Arg-max label map (values from ``label_values``; 0 = background) on ``original``'s grid."""
    return restore_labels(probabilities, canonical, original, label_values, progress)[0]


def probabilities_to_labels_reference(
    probabilities: np.ndarray,
    canonical: Geometry,
    original: Geometry,
    label_values: Sequence[int],
    progress: Progress,
    slab_voxels: int = 8_000_000,
) -> np.ndarray:
    """Every class resampled linearly, slab by slab, then arg-max: the plain definition (slow)."""
    import SimpleITK as sitk

    num_classes = probabilities.shape[0]
    dtype = np.uint8 if max(label_values, default=0) < 256 else np.uint16
    lookup = np.array([0] + list(label_values), dtype=dtype)
    channels = [1] if num_classes == 2 else list(range(num_classes))
    images = [Volume(probabilities[c], canonical).to_sitk() for c in channels]
    out = np.zeros(original.shape, dtype=dtype)
    slice_voxels = original.shape[1] * original.shape[2]
    slab = max(1, slab_voxels // max(1, slice_voxels * len(channels)))
    for k0 in range(0, original.shape[0], slab):
        k1 = min(original.shape[0], k0 + slab)
        target = original.cropped((k0, 0, 0), (k1, original.shape[1], original.shape[2]))
        # A copy, not GetArrayViewFromImage: a view of the temporary image would dangle.
        resampled = [
            sitk.GetArrayFromImage(_sitk_resample(image, target, sitk.sitkLinear, 1.0 if c == 0 else 0.0))
            for image, c in zip(images, channels)
        ]
        if num_classes == 2:
            out[k0:k1] = lookup[(resampled[0] > 0.5).astype(np.uint8)]
        else:
            out[k0:k1] = lookup[np.argmax(np.stack(resampled), axis=0)]
        progress.update(k1 / original.shape[0], "Resampling to the input grid")
    return out
