"""Methods compared by the interactive benchmark, each answering ``click(kji, positive)`` and
``box(corner1_ijk, corner2_ijk)`` with the whole mask [k, j, i]:

* :class:`SessionMethod`: SegmentAI's ``InteractionSession`` (a model, or the random-walker fallback),
* :class:`GrowCutMethod`: Slicer's Grow-from-seeds (``vtkImageGrowCutSegment`` from slicer-core), seeded
  as a Slicer user seeds it: positive clicks = object seeds; negative clicks and the border of a region
  around the prompts = background seeds; a box = object seed at its centre, background on its outline.
"""

from __future__ import annotations

import time
from typing import List, Tuple

import numpy as np

from segmentai_core.volume import Volume

BOX_MARGIN_MM = 24.0  # context Grow-from-seeds gets around the prompts (its region's border is background)


class SessionMethod:
    """SegmentAI's interaction session (a model, or the random-walker fallback)."""

    def __init__(self, image: Volume, predictor, worker, **options) -> None:
        from segmentai_core.interaction import InteractionSession

        self.name = predictor.name
        self.session = InteractionSession(predictor, worker=worker, **options)
        self.session.set_image(image)
        self.latencies: List[float] = []

    def click(self, kji: np.ndarray, positive: bool) -> np.ndarray:
        t0 = time.perf_counter()
        self.session.add_point(np.asarray(kji, dtype=float)[::-1], positive, space="ijk")
        self.latencies.append(time.perf_counter() - t0)
        return self.session.mask.astype(bool)

    def box(self, corner1_ijk: np.ndarray, corner2_ijk: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        self.session.add_box(corner1_ijk, corner2_ijk, space="ijk")
        self.latencies.append(time.perf_counter() - t0)
        return self.session.mask.astype(bool)


def growcut(image: np.ndarray, seeds: np.ndarray, spacing_ijk) -> np.ndarray:
    """Slicer's Grow-from-seeds (vtkImageGrowCutSegment) on arrays [k, j, i]; seeds 1 object, 2 background."""
    import vtk
    from slicer import vtkImageGrowCutSegment
    from vtk.util import numpy_support

    def to_vtk(array: np.ndarray):
        data = vtk.vtkImageData()
        data.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
        data.SetSpacing(*spacing_ijk)
        data.GetPointData().SetScalars(numpy_support.numpy_to_vtk(np.ascontiguousarray(array).ravel(), deep=True))
        return data

    segment = vtkImageGrowCutSegment()
    segment.SetIntensityVolume(to_vtk(image.astype(np.float32)))
    segment.SetSeedLabelVolume(to_vtk(seeds.astype(np.int16)))
    segment.Update()
    output = numpy_support.vtk_to_numpy(segment.GetOutput().GetPointData().GetScalars())
    return output.reshape(image.shape) == 1


class GrowCutMethod:
    """Grow-from-seeds restricted to a region around the prompts (its border = background seeds)."""

    name = "growcut"

    def __init__(self, image: Volume) -> None:
        self.image = image
        self.seeds: List[Tuple[np.ndarray, int]] = []  # (kji points, 1 object / 2 background)
        self.regions: List[Tuple[np.ndarray, np.ndarray]] = []  # (low, high) kji boxes the region must cover
        self.latencies: List[float] = []
        spacing_kji = np.array(image.geometry.spacing[::-1])
        self.margin = np.ceil(BOX_MARGIN_MM / spacing_kji).astype(int)

    def click(self, kji: np.ndarray, positive: bool) -> np.ndarray:
        point = np.asarray(kji, dtype=int)
        self.seeds.append((point[None], 1 if positive else 2))
        if positive:
            self.regions.append((point - self.margin, point + self.margin))
        return self._segment()

    def box(self, corner1_ijk: np.ndarray, corner2_ijk: np.ndarray) -> np.ndarray:
        """A rectangle on one slice (constant k): centre = object, outline = background."""
        low = np.minimum(corner1_ijk, corner2_ijk)[::-1].astype(int)
        high = np.maximum(corner1_ijk, corner2_ijk)[::-1].astype(int)
        k = low[0]
        outline = np.zeros(self.image.geometry.shape, dtype=bool)
        outline[k, low[1]:high[1] + 1, low[2]:high[2] + 1] = True
        outline[k, low[1] + 1:high[1], low[2] + 1:high[2]] = False
        self.seeds.append((np.argwhere(outline), 2))
        self.seeds.append((((low + high) // 2)[None], 1))
        across = np.array([self.margin[0], 1, 1])  # context along the slice normal; in-plane the outline bounds it
        self.regions.append((low - across, high + across))
        return self._segment()

    def _segment(self) -> np.ndarray:
        t0 = time.perf_counter()
        shape = np.array(self.image.geometry.shape)
        result = np.zeros(tuple(shape), dtype=bool)
        if not self.regions:
            return result
        lo = np.maximum(np.min([r[0] for r in self.regions], axis=0), 0)
        hi = np.minimum(np.max([r[1] for r in self.regions], axis=0) + 1, shape)
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        seeds = np.zeros(tuple(hi - lo), dtype=np.int16)
        border = np.ones(seeds.shape, dtype=bool)
        border[1:-1, 1:-1, 1:-1] = False
        seeds[border] = 2
        for points, label in self.seeds:
            for point in points - lo:
                if np.all((point >= 0) & (point < seeds.shape)):
                    if len(points) == 1:  # a click: a small ball, as a brush stroke would leave
                        seeds[tuple(slice(max(0, c - 1), c + 2) for c in point)] = label
                    else:
                        seeds[tuple(point)] = label
        result[box] = growcut(self.image.array[box], seeds, self.image.geometry.spacing)
        self.latencies.append(time.perf_counter() - t0)
        return result
