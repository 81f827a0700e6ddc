"""The boundary shell of :func:`~.restore.restore_labels` when the grids' axes are parallel.

A shell voxel lies in a *mixed* interpolation cell: its eight canonical corners do not share one
winning class. Interpolating every class at every shell voxel (8 gathers from the full
probability array per class and voxel) was most of restore's time on many-class outputs, so the
work is arranged by cell instead:

* per mixed cell, the corner values are gathered once: ``p1`` for two-class outputs, otherwise
  ``p_a - p_b`` for the two classes ``a``, ``b`` that win at its corners (where three or more
  classes meet, each of them, the highest interpolated value winning);
* the input voxels of one cell that share an input row (same k, j) share their interpolation
  along k and j: those two steps are done once per row *run*, leaving one linear step along i
  per voxel;
* the shell is enumerated from the cell grid (a mixed cell's voxels are a block of whole rows
  of the box), so the box is never scanned for it.

The decision is the per-voxel one (``p1 > 0.5``; the highest of the corner classes, the lower class
on a tie), with the trilinear sum evaluated axis by axis instead of corner by corner: the two
differ only where two classes tie to float32 rounding (0 voxels on the bench volumes, see
docs/benchmarks.md; the tests compare with SimpleITK resampling every class).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Optional, Sequence, Tuple

import numpy as np

__all__ = ["CellAxes", "shell_classes"]

_CHUNK_VOXELS = 1_000_000
"""Shell voxels decided at once by one thread (bounds the work memory to roughly 2 x 60 MB)."""


class CellAxes:
    """Per input box axis d: the canonical axis along it, each box voxel's interpolation cell
    (``floor(x) + 1``, -1 outside the canonical grid), its interpolation weight ``x - floor(x)``, and
    per cell the first box voxel and how many lie in it (a cell's voxels are contiguous along d)."""

    def __init__(self, axes: Sequence[int], coords: Sequence[np.ndarray], winner_shape: Sequence[int]) -> None:
        self.axes = tuple(axes)
        self.sizes = tuple(int(winner_shape[a]) for a in self.axes)  # canonical voxels along box axis d
        self.cell: list = []
        self.weight: list = []
        self.first: list = []
        self.count: list = []
        for c, n in zip(coords, self.sizes):
            inside = (c >= -0.5) & (c < n - 0.5)  # ITK: [-0.5, size - 0.5) is inside the grid
            floor = np.floor(c)
            cell = np.where(inside, np.clip(floor + 1, 0, n), -1).astype(np.intp)
            self.cell.append(cell)
            self.weight.append((c - floor).astype(np.float32))
            values, first, count = np.unique(cell, return_index=True, return_counts=True)
            keep = values >= 0
            self.first.append(np.zeros(n + 1, dtype=np.intp))
            self.count.append(np.zeros(n + 1, dtype=np.intp))
            self.first[-1][values[keep]] = first[keep]
            self.count[-1][values[keep]] = count[keep]


def _corner_indices(cells_kji: np.ndarray, axes: CellAxes, strides: Sequence[int]) -> np.ndarray:
    """(M, 8) flat canonical indices of the corners of cells ``cells_kji`` (M, 3), corner
    ``4 * b0 + 2 * b1 + b2`` taking the upper neighbour along box axis d where ``b_d`` is 1."""
    parts = []
    for d in range(3):
        n = axes.sizes[d]
        low = np.clip(cells_kji[:, d] - 1, 0, n - 1) * strides[axes.axes[d]]
        high = np.clip(cells_kji[:, d], 0, n - 1) * strides[axes.axes[d]]
        parts.append((low, high))
    corners = np.empty((len(cells_kji), 8), dtype=np.intp)
    for e in range(8):
        corners[:, e] = parts[0][e >> 2 & 1] + parts[1][e >> 1 & 1] + parts[2][e & 1]
    return corners


def shell_classes(
    probabilities: np.ndarray,
    winner: np.ndarray,
    cells: np.ndarray,
    target: np.ndarray,
    origin: Sequence[int],
    mixed: int,
    axes: CellAxes,
    chunk_voxels: Optional[int] = None,
) -> None:
    """Decide every voxel of the box whose cell in ``cells`` is ``mixed``, in place in ``target``
    (C-contiguous, holding the box from its index ``origin``). For two classes the shell voxels of
    ``target`` must already be 0 (background): only their foreground is written.

    The shell is enumerated from the (small) cell grid, never by scanning the box: each mixed
    cell's voxels are a block of rows. Chunks of cells bound the work memory; two run at a time,
    so the shell is split into at least two chunks of about equal size (a 1.0 + 0.56 M voxel split
    of a 512x512x300 head's shell left one thread idle for a third of the time).
    """
    moved = cells.transpose(axes.axes)
    mixed_cells = np.argwhere(moved == mixed)  # raster order
    if not len(mixed_cells):
        return
    rows = axes.count[0][mixed_cells[:, 0]] * axes.count[1][mixed_cells[:, 1]]
    voxels = rows * axes.count[2][mixed_cells[:, 2]]
    keep = voxels > 0  # a cell between two input voxels holds none
    mixed_cells, rows, voxels = mixed_cells[keep], rows[keep], voxels[keep]
    if not len(mixed_cells):
        return
    ends = np.cumsum(voxels)
    chunk_voxels = chunk_voxels or min(_CHUNK_VOXELS, -(-int(ends[-1]) // 2))
    chunks, start = [], 0
    while start < len(mixed_cells):
        stop = max(start + 1, int(np.searchsorted(ends, (ends[start - 1] if start else 0) + chunk_voxels)))
        chunks.append((start, stop))
        start = stop
    # Chunks write disjoint voxels and numpy releases the GIL in its loops: two threads.
    with ThreadPoolExecutor(max_workers=min(2, len(chunks))) as pool:
        list(pool.map(lambda c: _decide_cells(probabilities, winner, mixed_cells[c[0]:c[1]], rows[c[0]:c[1]],
                                              target, origin, axes), chunks))


def _expand(counts: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """For items with ``counts`` parts each: the item of every part, and its rank within the item."""
    owner = np.repeat(np.arange(len(counts)), counts)
    offsets = np.cumsum(counts) - counts
    return owner, np.arange(len(owner)) - offsets[owner]


def _decide_cells(probabilities: np.ndarray, winner: np.ndarray, mixed_cells: np.ndarray, rows: np.ndarray,
                  target: np.ndarray, origin: Sequence[int], axes: CellAxes) -> None:
    """Decide the voxels of the given mixed cells (``rows`` input rows each) in ``target``."""
    ck, cj, ci = mixed_cells.T
    corners = _corner_indices(mixed_cells, axes, [s // probabilities.itemsize for s in probabilities.strides[1:]])
    values, first, second, junction = _corner_values(probabilities, winner, corners)
    # Runs: one input row (k, j) through one cell; the interpolation along k and j once per run.
    run_cell, rank = _expand(rows)
    j_count = axes.count[1][cj[run_cell]]
    k = axes.first[0][ck[run_cell]] + rank // j_count
    j = axes.first[1][cj[run_cell]] + rank % j_count
    del rank, j_count
    shape = target.shape
    i_first = axes.first[2][ci[run_cell]]
    runs = _Runs(run_cell, ((k + origin[0]) * shape[1] + j + origin[1]) * shape[2] + origin[2] + i_first,
                 i_first, axes.count[2][ci[run_cell]], axes.weight[0][k][:, None], axes.weight[1][j][:, None])
    out = target.reshape(-1)
    pairs = np.arange(len(run_cell)) if junction is None else np.flatnonzero(~junction[run_cell])
    if first is None:  # two classes: one channel decides, p1 > 0.5
        _decide_foreground(runs, pairs, values, axes, out)
    else:  # p_a - p_b > 0: a; < 0: b; a tie: the lower class
        _decide_pair(runs, pairs, values, 0.0, first.astype(target.dtype), second.astype(target.dtype), axes, out)
    if junction is not None:
        _decide_junctions(runs, np.flatnonzero(junction[run_cell]), probabilities, winner, corners, axes, out)


class _Runs:
    """Per run: its cell, the flat box index and box i of its first voxel, its voxel count, k/j weights."""

    def __init__(self, cell, base, i_first, i_count, wk, wj) -> None:
        self.cell, self.base, self.i_first, self.i_count, self.wk, self.wj = cell, base, i_first, i_count, wk, wj

    def along_kj(self, which: np.ndarray, corner_values: np.ndarray) -> np.ndarray:
        """Values (..., 2) at the lower and upper i neighbour of runs ``which`` from their cells' 8
        corner values (..., 8) (corner 4 * b0 + 2 * b1 + b2): interpolated along k, then j."""
        wk, wj = self.wk[which], self.wj[which]
        if corner_values.ndim == 3:
            wk, wj = wk[:, :, None], wj[:, :, None]
        v = corner_values[..., :4] + wk * (corner_values[..., 4:] - corner_values[..., :4])
        return v[..., :2] + wj * (v[..., 2:] - v[..., :2])

    def voxels(self, which: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For every voxel of runs ``which``: its run (index into ``which``), flat box index and box i."""
        run, offset = _expand(self.i_count[which])
        return run, self.base[which][run] + offset, self.i_first[which][run] + offset


def _decide_foreground(runs: _Runs, which: np.ndarray, values: np.ndarray, axes: CellAxes, out: np.ndarray) -> None:
    """:func:`_decide_pair` for two classes, where ``out`` already holds 0 at every shell voxel: only
    the foreground (``p1 > 0.5``; a tie is background) is written. Runs wholly below 0.5 cost nothing
    and the rest write one constant (0.06 -> 0.04 s for the 1.6 M shell voxels of a 512x512x300 head)."""
    if not len(which):
        return
    ends = runs.along_kj(which, values[runs.cell[which]])
    low, high = ends[:, 0], ends[:, 1]
    above = (low > 0.5) & (high > 0.5)
    out[runs.voxels(which[above])[1]] = 1
    split = np.flatnonzero(~above & ((low >= 0.5) | (high >= 0.5)))  # both ends below: background
    _, flat, value = _along_i(runs, which, split, low, high, axes)
    out[flat[value > 0.5]] = 1


def _along_i(runs: _Runs, which: np.ndarray, split: np.ndarray, low: np.ndarray, high: np.ndarray,
             axes: CellAxes) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every voxel of runs ``which[split]``: its run (index into ``split``), flat index, and the
    value interpolated along i between its run's two ends ``low``, ``high`` (indexed like ``which``)."""
    run, flat, i = runs.voxels(which[split])
    start = low[split][run]
    return run, flat, start + axes.weight[2][i] * (high[split][run] - start)


def _decide_pair(runs: _Runs, which: np.ndarray, values: np.ndarray, threshold: float, above: np.ndarray,
                 below: np.ndarray, axes: CellAxes, out: np.ndarray) -> None:
    """Runs of cells where one value decides: ``above`` the threshold one class, ``below`` the other
    (a tie: the lower of the two). A run whose two ends lie on one side is decided whole (linear
    interpolation between them stays on that side); the others voxel by voxel."""
    if not len(which):
        return
    cell = runs.cell[which]
    ends = runs.along_kj(which, values[cell])
    low, high = ends[:, 0], ends[:, 1]
    side = np.where((low > threshold) & (high > threshold), 1, np.where((low < threshold) & (high < threshold), 0, -1))
    for decided_side, classes in ((1, above), (0, below)):
        whole = np.flatnonzero(side == decided_side)
        run, flat, _ = runs.voxels(which[whole])
        out[flat] = classes[cell[whole]][run]
    split = np.flatnonzero(side < 0)
    run, flat, value = _along_i(runs, which, split, low, high, axes)
    cells = cell[split][run]
    a, b = above[cells], below[cells]
    take_b = (value < threshold) | ((value == threshold) & (b < a))
    out[flat] = np.where(take_b, b, a)


def _decide_junctions(runs: _Runs, which: np.ndarray, probabilities: np.ndarray, winner: np.ndarray,
                      corners: np.ndarray, axes: CellAxes, out: np.ndarray) -> None:
    """Runs of cells where three or more classes win at the corners: every candidate interpolated,
    the highest wins (the lowest class on a tie)."""
    if not len(which):
        return
    cells, cell_of_run = np.unique(runs.cell[which], return_inverse=True)
    candidates = np.sort(winner.reshape(-1)[corners[cells]], axis=1)  # (J, 8), ascending
    repeated = np.zeros(candidates.shape, dtype=bool)
    repeated[:, 1:] = candidates[:, 1:] == candidates[:, :-1]
    # Distinct classes first (still ascending); the rest repeat one of them and change nothing.
    order = np.argsort(repeated, axis=1, kind="stable")
    slots = int((~repeated).sum(axis=1).max())
    candidates = np.take_along_axis(candidates, order, axis=1)[:, :slots]
    flat = probabilities.reshape(-1)
    corner_values = flat[candidates.astype(np.intp)[:, :, None] * winner.size + corners[cells][:, None, :]]
    ends = runs.along_kj(which, corner_values[cell_of_run])  # (R, S, 2)
    run, flat_index, i = runs.voxels(which)
    weight = axes.weight[2][i][:, None]
    start = ends[:, :, 0][run]
    value = start + weight * (ends[:, :, 1][run] - start)
    out[flat_index] = candidates[cell_of_run[run], np.argmax(value, axis=1)]


def _corner_values(probabilities: np.ndarray, winner: np.ndarray, corners: np.ndarray
                   ) -> Tuple[np.ndarray, Optional[np.ndarray], Optional[np.ndarray], Optional[np.ndarray]]:
    """Per cell: the corner values to interpolate, the two candidate classes, and which cells have more."""
    volume = winner.size
    flat = probabilities.reshape(-1)
    if probabilities.shape[0] == 2:
        return flat[volume + corners], None, None, None
    winners = winner.reshape(-1)[corners]  # (M, 8)
    first = winners[:, 0].copy()
    second = first.copy()
    for e in range(1, 8):
        unset = second == first
        second[unset] = winners[unset, e]
    junction = ((winners != first[:, None]) & (winners != second[:, None])).any(axis=1)
    base_a = first.astype(np.intp)[:, None] * volume
    base_b = second.astype(np.intp)[:, None] * volume
    values = flat[base_a + corners] - flat[base_b + corners]
    return values, first, second, (junction if junction.any() else None)
