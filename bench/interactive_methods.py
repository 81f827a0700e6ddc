"""Methods compared by the interactive benchmark, each answering ``click(kji, positive)`` and
``box(corner1_ijk, corner2_ijk)`` with the whole mask [k, j, i]:

* :class:`SessionMethod`: SegmentAI's ``InteractionSession`` (any predictor), optionally told the ROI
  (``session.set_roi``: outside it is background),
* :class:`GrowCutMethod`: Slicer's Grow-from-seeds (``vtkImageGrowCutSegment`` from slicer-core), seeded
  as a Slicer user seeds it: clicks = small object/background seed balls; with an ``roi`` (the same
  box the session is told) it runs inside the ROI and the ROI's border is background, as after
  drawing an ROI in Slicer; without one (clicks only) it runs on the whole (cropped) image with the
  clicks as its only seeds; a 3D box (CVPR protocol) becomes the ROI with an object seed at its centre;
  a 2D box = object seed at its centre, background on its outline.
"""

from __future__ import annotations

import time
from typing import List, Optional, Tuple

import numpy as np

try:  # the session's own rule for a 3D box
    from segmentai_core.interaction.session import BOX_ROI_MARGIN_MM
except ImportError:  # an engine from before that rule (bench_latency_fullres.py --root), whose bench set it
    BOX_ROI_MARGIN_MM = 5.0
from segmentai_core.volume import Volume

Box = Tuple[np.ndarray, np.ndarray]  # (low, high) corners (i, j, k), inclusive


def box_roi(image: Volume, corner1_ijk, corner2_ijk, margin_mm: float = BOX_ROI_MARGIN_MM) -> Box:
    """The ROI Grow-from-seeds gets for a 3D box: the box plus ``margin_mm``, clipped (as the session makes it)."""
    margin = np.ceil(margin_mm / np.array(image.geometry.spacing))
    size = np.array(image.geometry.size_ijk) - 1
    low = np.clip(np.minimum(corner1_ijk, corner2_ijk) - margin, 0, size)
    high = np.clip(np.maximum(corner1_ijk, corner2_ijk) + margin, 0, size)
    return low, high


class SessionMethod:
    """SegmentAI's interaction session (a model, or the random-walker fallback)."""

    def __init__(self, image: Volume, predictor, worker, roi: Optional[Box] = None, **options) -> None:
        from segmentai_core.interaction import InteractionSession

        self.name = predictor.name
        self.session = InteractionSession(predictor, worker=worker, **options)
        self.session.set_image(image)
        self.image = image
        if roi is not None:
            self.session.set_roi(roi[0], roi[1], space="ijk")
        self.latencies: List[float] = []

    def click(self, kji: np.ndarray, positive: bool) -> np.ndarray:
        t0 = time.perf_counter()
        self.session.add_point(np.asarray(kji, dtype=float)[::-1], positive, space="ijk")
        self.latencies.append(time.perf_counter() - t0)
        return self.session.mask.astype(bool)

    def box(self, corner1_ijk: np.ndarray, corner2_ijk: np.ndarray) -> np.ndarray:
        """A box prompt; the session itself makes a 3D box the region of interest of the interactions
        after it (the box plus ``BOX_ROI_MARGIN_MM``, as Grow-from-seeds is given it), unless the
        session was made with ``box_roi_margin_mm=None``."""
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
    """Grow-from-seeds on the clicks, inside an ROI (its border = background seeds) or on the whole image."""

    name = "growcut"

    def __init__(self, image: Volume, roi: Optional[Box] = None) -> None:
        self.image = image
        self.roi = roi
        self.seeds: List[Tuple[np.ndarray, int]] = []  # (kji points, 1 object / 2 background)
        self.latencies: List[float] = []

    def click(self, kji: np.ndarray, positive: bool) -> np.ndarray:
        self.seeds.append((np.asarray(kji, dtype=int)[None], 1 if positive else 2))
        return self._segment()

    def box(self, corner1_ijk: np.ndarray, corner2_ijk: np.ndarray) -> np.ndarray:
        """A 3D box: the ROI (``box_roi``), with an object seed at its centre. A 2D box (constant k):
        centre = object, outline = background, inside the ROI (if any)."""
        low = np.minimum(corner1_ijk, corner2_ijk).astype(int)
        high = np.maximum(corner1_ijk, corner2_ijk).astype(int)
        centre = ((low + high) // 2)[::-1]
        if np.all(high > low):
            self.roi = box_roi(self.image, low, high)
        else:
            lo, hi = low[::-1], high[::-1]
            outline = np.zeros(self.image.geometry.shape, dtype=bool)
            outline[lo[0], lo[1]:hi[1] + 1, lo[2]:hi[2] + 1] = True
            outline[lo[0], lo[1] + 1:hi[1], lo[2] + 1:hi[2]] = False
            self.seeds.append((np.argwhere(outline), 2))
        self.seeds.append((centre[None], 1))
        return self._segment()

    def _segment(self) -> np.ndarray:
        t0 = time.perf_counter()
        shape = np.array(self.image.geometry.shape)
        result = np.zeros(tuple(shape), dtype=bool)
        if self.roi is not None:
            lo = np.maximum(np.asarray(self.roi[0])[::-1].astype(int), 0)
            hi = np.minimum(np.asarray(self.roi[1])[::-1].astype(int) + 1, shape)
        else:
            lo, hi = np.zeros(3, dtype=int), shape
        box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
        seeds = np.zeros(tuple(hi - lo), dtype=np.int16)
        if self.roi is not None:
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
        if (seeds == 1).any():
            if not (seeds == 2).any():
                result[box] = True  # one label only: Grow-from-seeds gives it every voxel
            else:
                result[box] = growcut(self.image.array[box], seeds, self.image.geometry.spacing)
        self.latencies.append(time.perf_counter() - t0)
        return result
