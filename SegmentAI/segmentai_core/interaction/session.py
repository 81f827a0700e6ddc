"""A Slicer-free interaction session: one image, one target object, its prompts and its history.

Shape after nnInteractive's inference session: set the image, set (or initialise) the target
mask, then add points, boxes and scribbles; each call re-segments a local region around the object
and the prompts (widened, coarser, while the object reaches its edge) and returns the updated mask.
A point or scribble changes the mask where it was placed only (positive ones add, negative ones
remove, connected to the prompt), and the voxels under a scribble always take its side, as painted;
optionally, a click that a model leaves wrong is answered by the random-walker fallback. A 3D box
is also the region of interest of the prompts after it (the box plus ``BOX_ROI_MARGIN_MM``). Undo/redo
go back and forth over many levels and restore the mask exactly. Voxels of other segments
(``protected``) are never taken when
``protect_other_segments`` is on (the default).

    session = InteractionSession()              # the installed interactive model, else the fallback
    session.set_image(volume)
    update = session.add_point((12.0, -30.5, 8.0), positive=True)   # RAS mm, Slicer's convention
    update = session.add_point((40, 52, 17), positive=False, space="ijk")
    session.undo()
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import InputError
from ..geometry import Geometry
from ..inference.canonical import resample_above, resample_to
from ..inference.input_check import looks_like_hounsfield
from ..inference.normalization import normalize
from ..volume import Volume
from .guidance import guidance_maps
from .predictors import (ModelPredictor, Predictor, RandomWalkerPredictor, WorkingInputs, find_interactive_model,
                         uses_network)
from .prompts import Prompt, box_extent, box_prompts, check_inside, polyline_samples, to_ijk
from .region import LocalRegion, beyond_image, plan_region, touches_open_border, zoom_out_points
from .crop_update import (Slices, _changed_box, _covered, _follow_prompt, _prompt_honoured, _prompt_marks,
                          _refine_grid)
from .worker import InteractionWorker

__all__ = ["BOX_ROI_MARGIN_MM", "InteractionSession", "Update", "default_predictor"]

BOX_ROI_MARGIN_MM = 5.0
"""A 3D box prompt is the region of interest of the interactions after it, this much larger (a tight
box's border lies on the object)."""

Positions = Union[Sequence[float], Sequence[Sequence[float]], np.ndarray]


@dataclass
class Update:
    """The result of one interaction.

    ``mask`` is a read-only view of the session's target (uint8 0/1, [k, j, i], on the image's
    grid); ``region`` the array slices that changed (None when nothing did); ``seconds`` the wall
    time of the call.
    """

    mask: np.ndarray
    region: Optional[Slices]
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return self.region is not None


@dataclass
class _Step:
    """One undoable step: the changed box before and after, and the prompt lists around it."""

    region: Optional[Slices]
    before: Optional[np.ndarray]
    after: Optional[np.ndarray]
    prompts_before: Tuple[Prompt, ...]
    prompts_after: Tuple[Prompt, ...]


def default_predictor(device: str = "auto", registry=None, package=None) -> Predictor:
    """The default engine: the hybrid (:class:`~.hybrid.HybridPredictor`: the installed interactive model,
    highest version, as the data term of a geodesic competition on the image's edges), or the random
    walker when no model is installed. ``package`` picks the model instead of the registry."""
    from .hybrid import HybridPredictor

    package = package if package is not None else find_interactive_model(registry)
    if package is None:
        return RandomWalkerPredictor()
    return HybridPredictor(ModelPredictor(package, device=device, flips=0))


class InteractionSession:
    """Owns the image, the target mask, the prompts and the undo history of one object."""

    def __init__(self, predictor: Optional[Predictor] = None, *, protect_other_segments: bool = True,
                 worker: Optional[InteractionWorker] = None, max_undo: int = 100, device: str = "auto",
                 rescue_missed_clicks: bool = False, zoom_out_passes: int = 2,
                 box_roi_margin_mm: Optional[float] = BOX_ROI_MARGIN_MM) -> None:
        self.predictor: Predictor = predictor if predictor is not None else default_predictor(device)
        # Optional: a model may leave a clicked voxel unchanged (the click then seems ignored); the
        # classical predictor can answer that click instead. Off by default: an earlier benchmark run
        # (not kept) found it rarely needed and lowering the mean Dice after many clicks.
        self.rescue: Optional[Predictor] = (
            RandomWalkerPredictor() if rescue_missed_clicks and not isinstance(self.predictor, RandomWalkerPredictor)
            else None)
        self.rescued_clicks = 0
        # When the predicted object reaches the edge of the view (inside the image), predict again in a
        # view 1.5 times larger (coarser, up to the predictor's max_zoom), at most this many times per
        # interaction, as nnInteractive's auto-zoom does for objects larger than the first view. Measured
        # (bench_interactive.py): it never triggered on 10 atlas structures and 3 lesions (results unchanged);
        # on a head's whole brain, Dice after 10 clicks 0.22 -> 0.62 (interactive-unet 1.1.0), 0.13 -> 0.33
        # (1.2.0 as shipped, with its flip), 0.25 -> 0.13 (1.2.0 without it): docs/benchmarks-interactive.md.
        self.zoom_out_passes = zoom_out_passes
        self.zoomed_out = 0
        self.protect_other_segments = protect_other_segments
        # A 3D box prompt is also the region of interest of the interactions after it (see _view_roi);
        # None: a box only bounds its own change.
        self.box_roi_margin_mm = box_roi_margin_mm
        self.max_undo = max_undo
        self._own_worker = worker is None
        self.worker = worker or InteractionWorker()
        self._image: Optional[Volume] = None
        self._mask: Optional[np.ndarray] = None
        self._initial: Optional[np.ndarray] = None
        self._protected: Optional[np.ndarray] = None
        self._prompts: List[Prompt] = []
        self._roi: Optional[Tuple[np.ndarray, np.ndarray]] = None
        self._undo: List[_Step] = []
        self._redo: List[_Step] = []
        self.last_region: Optional[LocalRegion] = None
        self._resampled: dict = {}  # the image's crop on a grid, normalised (see _image_on)
        self._resampled_lock = threading.Lock()  # the worker prepares a region of interest's crops ahead
        self._preparing = None  # that work's future (see _prepare_roi)

    # --- setup -------------------------------------------------------------------------------

    def set_image(self, volume: Volume) -> None:
        """Use ``volume`` (any grid: anisotropic, oblique) and start with an empty target."""
        if volume.array.ndim != 3:
            raise InputError("interactive segmentation needs a 3D image")
        self._wait_prepared()
        self._image = volume
        self._resampled = {}
        self._hounsfield = looks_like_hounsfield(volume.array)
        self._roi = None
        if uses_network(self.predictor, self._hounsfield):  # in CT the hybrid engine runs no network
            self.worker.submit(self.predictor.load)  # load the model while the user aims the first click
        self.set_target(None)

    @property
    def geometry(self) -> Geometry:
        return self._require_image().geometry

    def set_target(self, mask: Union[np.ndarray, Volume, None] = None,
                   protected: Union[np.ndarray, Volume, None] = None) -> Update:
        """Start a new object from ``mask`` (non-zero = object; None: empty); prompts and history are
        cleared. ``protected`` (optional) marks voxels of other segments."""
        self._mask = self._as_mask(mask, "target mask")
        self._initial = self._mask.copy()
        if protected is not None:
            self.set_protected(protected)
        self._prompts, self._undo, self._redo = [], [], []
        return self._update(None, 0.0)

    def set_protected(self, protected: Union[np.ndarray, Volume, None]) -> None:
        """Voxels belonging to other segments (non-zero), which an update never takes."""
        self._protected = None if protected is None else self._as_mask(protected, "protected mask").astype(bool)

    def set_roi(self, corner1: Optional[Positions] = None, corner2: Optional[Positions] = None,
                space: str = "ras", prepare: bool = True) -> None:
        """Bound every later update to the box between two opposite corners (aligned with the voxel
        axes), as Grow-from-seeds bounds itself to its ROI: voxels outside it are background and its
        border is a background seed for the predictors that use seeds. ``None`` removes it. Not a
        prompt: it predicts nothing by itself, is not undone, and stays for later targets.

        ``prepare``: start on the worker, while the user aims, the work the first click in it needs
        (:meth:`_prepare_roi`); a script that clicks at once gains nothing from it."""
        if corner1 is None:
            self._roi = None
            return
        corners = np.concatenate([to_ijk(corner1, self.geometry, space), to_ijk(corner2, self.geometry, space)])
        if len(corners) != 2:
            raise InputError("a region of interest is given by two corners (three numbers each)")
        size = np.array(self.geometry.size_ijk) - 1
        if np.any(corners.max(axis=0) < -0.5) or np.any(corners.min(axis=0) > size + 0.5):
            raise InputError("the region of interest lies outside the image")
        low, high = self._roi_voxels(corners.min(axis=0), corners.max(axis=0))
        if np.any(high < low):
            raise InputError("the region of interest lies outside the image")
        self._roi = (low, high)
        if prepare and getattr(self.predictor, "prepare", None) is not None:
            self._preparing = self.worker.submit(self._prepare_roi)

    def _prepare_roi(self) -> None:
        """On the worker, while the user aims the first click in the new region of interest: the
        region's crops of the image (the working and redraw grids) and the predictor's
        click-independent work (``predictor.prepare``). A click that comes sooner waits for it, then
        finds it done. Nothing is prepared when the view depends on where the click falls (an ROI too
        large to see whole). A failure here is only logged: the click computes everything itself."""
        if self._roi is None:  # removed before this ran
            return
        try:
            corners = np.array(self._roi, dtype=float)
            regions = [self._within_roi(plan_region(self.geometry, self._require_mask(), corners, corner,
                                                    self.predictor.settings), self._roi) for corner in corners]
            if regions[0].crop != regions[1].crop or not regions[0].working.same_grid(regions[1].working, 1e-6):
                return
            region, predictor = regions[0], self.predictor
            working = region.working
            image_w = self._image_on(region, working, predictor.normalization, background="minimum")
            grid = _refine_grid(region.crop_geometry, working, getattr(predictor, "refine_max_voxels", None))
            if getattr(predictor, "refine_on_crop", None) is not None and grid is not None:
                self._image_on(region, grid, predictor.normalization)
            empty = np.zeros(working.shape, dtype=np.float32)
            predictor.prepare(WorkingInputs(image_w, empty, empty, empty, float(working.spacing[0]),  # type: ignore
                                            ~_covered(region.crop_geometry, working),
                                            beyond_image(self.geometry, working), self._hounsfield))
        except Exception:  # noqa: BLE001 - an optimisation: the first click recomputes whatever this missed
            logging.getLogger(__name__).debug("preparing the region of interest failed", exc_info=True)

    def _wait_prepared(self) -> None:
        """Let the region of interest's preparation finish before the image changes under it."""
        if self._preparing is not None:
            self._preparing.exception()  # waits; a failure was logged there
            self._preparing = None

    def _roi_voxels(self, low: np.ndarray, high: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """The voxels (i, j, k, inclusive) of the box between ``low`` and ``high`` (continuous i, j, k),
        clipped to the image."""
        size = np.array(self.geometry.size_ijk) - 1
        return (np.clip(np.ceil(low - 1e-6), 0, size).astype(int),
                np.clip(np.floor(high + 1e-6), 0, size).astype(int))

    def _view_roi(self, prompts: Sequence[Prompt]) -> Optional[Tuple[np.ndarray, np.ndarray]]:
        """The region of interest of an interaction with ``prompts``: the latest 3D box among them plus
        ``box_roi_margin_mm`` (a box is drawn around the object, so beyond it is background, as the
        ROI of :meth:`set_roi` makes it), widened to take in, with the same margin, each later point
        or scribble that lies beyond it (the user is correcting a box drawn too small); without a 3D
        box, the ROI of :meth:`set_roi` (or None). Derived from the prompts, so undo and redo take it
        back and forth with them."""
        if self.box_roi_margin_mm is None:
            return self._roi
        boxes = [n for n, p in enumerate(prompts) if p.kind == "box" and box_extent(*p.array)[2] < 0]
        if not boxes:
            return self._roi
        margin = np.ceil(self.box_roi_margin_mm / np.array(self.geometry.spacing))
        size = np.array(self.geometry.size_ijk) - 1
        corners = prompts[boxes[-1]].array
        low, high = np.clip(corners.min(axis=0) - margin, 0, size), np.clip(corners.max(axis=0) + margin, 0, size)
        for prompt in prompts[boxes[-1] + 1:]:
            for point in prompt.array if prompt.kind in ("point", "scribble") else ():
                if np.any(point < low - 0.5) or np.any(point > high + 0.5):
                    low = np.minimum(low, np.clip(point - margin, 0, size))
                    high = np.maximum(high, np.clip(point + margin, 0, size))
        return self._roi_voxels(low, high)

    @property
    def roi(self) -> Optional[Tuple[np.ndarray, np.ndarray]]:
        """(low, high) voxel indices (i, j, k), inclusive, of the region of interest, or None."""
        return None if self._roi is None else (self._roi[0].copy(), self._roi[1].copy())

    @property
    def mask(self) -> np.ndarray:
        """Read-only view of the current target mask (uint8, [k, j, i])."""
        view = self._require_mask().view()
        view.flags.writeable = False
        return view

    @property
    def prompts(self) -> Tuple[Prompt, ...]:
        return tuple(self._prompts)

    # --- prompts -----------------------------------------------------------------------------

    def add_point(self, position: Positions, positive: bool = True, space: str = "ras") -> Update:
        """Add a click at ``position`` (RAS mm by default; ``space="ijk"`` for voxel indices i, j, k)."""
        ijk = to_ijk(position, self.geometry, space)
        if len(ijk) != 1:
            raise InputError("a point is one position (three numbers)")
        check_inside(ijk, self.geometry, "the point")
        return self._interact(Prompt("point", (tuple(ijk[0]),), bool(positive)))

    def add_box(self, corner1: Positions, corner2: Positions, space: str = "ras") -> Update:
        """Add a box from two opposite corners: a rectangle on one slice when it is flat along one
        voxel axis, else a 3D region of interest. The box is aligned with the image's voxel axes."""
        corners = np.concatenate([to_ijk(corner1, self.geometry, space), to_ijk(corner2, self.geometry, space)])
        if len(corners) != 2:
            raise InputError("a box is given by two corners (three numbers each)")
        check_inside(corners, self.geometry, "the box corner")
        box_extent(corners[0], corners[1])  # refuses a box flat along two axes
        return self._interact(Prompt("box", tuple(tuple(c) for c in corners), True))

    def add_scribble(self, points: Positions, positive: bool = True, space: str = "ras") -> Update:
        """Add a scribble: a polyline through ``points`` (N × 3), object or background."""
        ijk = to_ijk(points, self.geometry, space)
        check_inside(ijk, self.geometry, "the scribble point")
        return self._interact(Prompt("scribble", tuple(tuple(p) for p in ijk), bool(positive)))

    # --- history -----------------------------------------------------------------------------

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def undo(self) -> Update:
        """Go back one step (mask and prompts exactly as before it); no-op when there is none."""
        t0 = time.perf_counter()
        if not self._undo:
            return self._update(None, 0.0)
        step = self._undo.pop()
        self._apply(step.region, step.before, step.prompts_before)
        self._redo.append(step)
        return self._update(step.region, time.perf_counter() - t0)

    def redo(self) -> Update:
        """Re-apply the last undone step; no-op when there is none."""
        t0 = time.perf_counter()
        if not self._redo:
            return self._update(None, 0.0)
        step = self._redo.pop()
        self._apply(step.region, step.after, step.prompts_after)
        self._undo.append(step)
        return self._update(step.region, time.perf_counter() - t0)

    def reset(self) -> Update:
        """Drop every prompt and return to the initial target (undoable)."""
        t0 = time.perf_counter()
        mask = self._require_mask()
        region = _changed_box(mask, self._initial)
        self._record(region, self._initial, ())
        return self._update(region, time.perf_counter() - t0)

    def close(self) -> None:
        """Stop the worker thread if the session created it."""
        if self._own_worker:
            self.worker.close()

    def __enter__(self) -> "InteractionSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- internals ---------------------------------------------------------------------------

    def _require_image(self) -> Volume:
        if self._image is None:
            raise InputError("no image: call set_image first")
        return self._image

    def _require_mask(self) -> np.ndarray:
        if self._mask is None:
            raise InputError("no image: call set_image first")
        return self._mask

    def _as_mask(self, mask: Union[np.ndarray, Volume, None], what: str) -> np.ndarray:
        geometry = self.geometry
        if mask is None:
            return np.zeros(geometry.shape, dtype=np.uint8)
        if isinstance(mask, Volume):
            if not mask.geometry.same_grid(geometry):
                raise InputError(f"the {what} is not on the image's grid ({mask.geometry.describe()} vs "
                                 f"{geometry.describe()})")
            mask = mask.array
        mask = np.asarray(mask)
        if mask.shape != geometry.shape:
            raise InputError(f"the {what} has shape {mask.shape}, the image {geometry.shape} (arrays are [k, j, i])")
        return (mask != 0).astype(np.uint8)

    def _update(self, region: Optional[Slices], seconds: float) -> Update:
        return Update(self.mask, region, seconds)

    def _apply(self, region: Optional[Slices], values: Optional[np.ndarray], prompts: Sequence[Prompt]) -> None:
        if region is not None and values is not None:
            self._require_mask()[region] = values
        self._prompts = list(prompts)

    def _record(self, region: Optional[Slices], new_full_or_region: Optional[np.ndarray],
                prompts_after: Sequence[Prompt], *, values_are_region: bool = False) -> None:
        mask = self._require_mask()
        before = after = None
        if region is not None:
            before = mask[region].copy()
            after = new_full_or_region if values_are_region else new_full_or_region[region].copy()
        step = _Step(region, before, after, tuple(self._prompts), tuple(prompts_after))
        self._apply(region, after, prompts_after)
        self._undo.append(step)
        del self._undo[: max(0, len(self._undo) - self.max_undo)]
        self._redo.clear()

    def _interact(self, prompt: Prompt) -> Update:
        t0 = time.perf_counter()
        prompts = self._prompts + [prompt]
        new_crop, region = self._predict(prompts)
        mask = self._require_mask()
        old_crop = mask[region.crop]
        changed = _changed_box(new_crop, old_crop)
        if changed is None:
            self._record(None, None, prompts)
            return self._update(None, time.perf_counter() - t0)
        full = tuple(slice(c.start + s.start, c.start + s.stop) for c, s in zip(region.crop, changed))
        self._record(full, new_crop[changed].copy(), prompts, values_are_region=True)
        return self._update(full, time.perf_counter() - t0)  # type: ignore[arg-type]

    def _predict(self, prompts: List[Prompt]) -> Tuple[np.ndarray, LocalRegion]:
        """Re-segment the local region for ``prompts``; returns the new crop of the mask and the region.

        When the newest prompt is a point or scribble that the predictor left wrong, the rescue
        predictor (if any) answers it instead.
        """
        result, region = self._predict_with(self.predictor, prompts)
        if self.rescue is not None and not _prompt_honoured(result, region, prompts[-1], self.geometry):
            self.rescued_clicks += 1
            result, region = self._predict_with(self.rescue, prompts)
        if prompts[-1].kind == "scribble":
            self._paint(result, region, prompts[-1])
        return result, region

    def _paint(self, result: np.ndarray, region: LocalRegion, scribble: Prompt) -> None:
        """The voxels under a scribble take its side in ``result`` (the crop), as a brush stroke would;
        a positive stroke never takes a protected voxel."""
        kji = self.geometry.ijk_to_array_index(polyline_samples(scribble.array, 0.5))
        kji = np.unique(kji[self.geometry.contains_index(kji)], axis=0)
        start = np.array([s.start for s in region.crop])
        local = kji - start
        inside = np.all((local >= 0) & (local < np.array(result.shape)), axis=1)
        kji, local = kji[inside], local[inside]
        if scribble.positive and self.protect_other_segments and self._protected is not None:
            free = ~self._protected[tuple(kji.T)]
            local = local[free]
        result[tuple(local.T)] = 1 if scribble.positive else 0

    def _predict_with(self, predictor: Predictor, prompts: List[Prompt]) -> Tuple[np.ndarray, LocalRegion]:
        geometry = self.geometry
        points = np.concatenate([p.array for p in prompts])
        roi = self._view_roi(prompts)
        if roi is not None:  # see the whole region of interest when it fits
            points = np.concatenate([points, np.array(roi, dtype=float)])
        region = self._within_roi(plan_region(geometry, self._require_mask(), points,
                                              prompts[-1].array.mean(axis=0), predictor.settings), roi)
        probability, previous = self._probability(predictor, prompts, region, roi)
        for _ in range(self.zoom_out_passes):
            if not touches_open_border(probability, region.working, geometry):
                break
            wider = self._within_roi(plan_region(geometry, self._require_mask(),
                                                 np.concatenate([points, zoom_out_points(region, geometry)]),
                                                 prompts[-1].array.mean(axis=0), predictor.settings), roi)
            if wider.working.spacing[0] <= region.working.spacing[0] + 1e-6:
                break  # at the predictor's coarsest view already (or a window of a too-large object)
            region = wider
            probability, previous = self._probability(predictor, prompts, region, roi)
            self.zoomed_out += 1
        self.last_region = region
        return self._paste(probability, previous, prompts, region, predictor), region

    def _within_roi(self, region: LocalRegion, roi: Optional[Tuple[np.ndarray, np.ndarray]]) -> LocalRegion:
        """``region`` with its crop clipped to the region of interest ``roi`` (the working grid unchanged)."""
        if roi is None:
            return region
        low, high = roi
        crop = tuple(slice(max(s.start, int(low[a])), max(max(s.start, int(low[a])), min(s.stop, int(high[a]) + 1)))
                     for s, a in zip(region.crop, (2, 1, 0)))
        if any(s.stop <= s.start for s in crop):  # the window lies beside the ROI: keep the ROI's nearest voxels
            crop = tuple(slice(int(low[a]), int(high[a]) + 1) for a in (2, 1, 0))
        geometry = self.geometry.cropped([s.start for s in crop], [s.stop for s in crop])
        return LocalRegion(crop, geometry, region.working)  # type: ignore[arg-type]

    def _probability(self, predictor: Predictor, prompts: List[Prompt], region: LocalRegion,
                     roi: Optional[Tuple[np.ndarray, np.ndarray]]) -> Tuple[np.ndarray, np.ndarray]:
        """The predictor's object probability on ``region``'s working grid for ``prompts``, and the
        previous mask as the predictor saw it there (``roi``: the interaction's region of interest)."""
        image, mask = self._require_image(), self._require_mask()
        guidance: List[Prompt] = []
        for n, prompt in enumerate(prompts):
            guidance.extend(box_prompts(prompt, prompts[n + 1:]) if prompt.kind == "box" else [prompt])
        crop, crop_geometry, working = region.crop, region.crop_geometry, region.working
        image_w = self._image_on(region, working, predictor.normalization, background="minimum")
        # float32 from the uint8 crop itself (no crop-sized float copy)
        previous_w = resample_to(Volume(mask[crop], crop_geometry), working, order=1).array
        positive, negative = guidance_maps(guidance, image.geometry, working, predictor.sigma)
        outside = None if roi is None else ~_covered(crop_geometry, working)
        inputs = WorkingInputs(image_w, previous_w, positive, negative, float(working.spacing[0]), outside,
                               beyond_image(image.geometry, working), self._hounsfield)
        probability = self.worker.call(predictor.predict, inputs)
        if outside is not None:
            probability = np.where(outside, np.float32(0), probability)
        return probability, previous_w

    def _paste(self, probability: np.ndarray, previous_w: np.ndarray, prompts: List[Prompt],
               region: LocalRegion, predictor: Optional[Predictor] = None) -> np.ndarray:
        """The new crop of the mask: the prediction where this interaction may and does change it.

        A predictor with a ``refine_on_crop`` method (the hybrid) redraws the boundary on the crop's own
        (finer) voxels; the previous mask is then compared as it is, not through the working grid."""
        mask, geometry = self._require_mask(), self.geometry
        crop, crop_geometry, working = region.crop, region.crop_geometry, region.working
        refine = getattr(predictor, "refine_on_crop", None)
        grid = (_refine_grid(crop_geometry, working, getattr(predictor, "refine_max_voxels", None))
                if refine is not None else None)
        if grid is not None:
            if grid is crop_geometry:
                positive, negative = self._prompt_voxels(prompts, crop)
            else:  # a coarser grid than the crop's (still finer than the working grid); carried back below
                positive, negative = self._prompt_voxels_on(prompts, grid)
            soft = resample_to(Volume(probability, working), grid, order=1).array
            soft = self.worker.call(refine, self._image_on(region, grid, predictor.normalization),  # type: ignore
                                    soft, positive, negative, grid.spacing_kji, float(working.spacing[0]))
            new = resample_above(Volume(soft, grid), crop_geometry) if grid is not crop_geometry else soft > 0.5
            seen = mask[crop].astype(bool)
        else:
            # Back on the crop, change only where the new decision differs from the previous mask seen
            # through the same two resamplings: elsewhere the previous (finer) boundary stays as it was.
            new = resample_above(Volume(probability, working), crop_geometry)
            seen = resample_above(Volume(previous_w, working), crop_geometry)
        # A box bounds the change it makes; a later click or scribble may go beyond an earlier box
        # (the user is correcting it), and only its own connected change is kept (_follow_prompt).
        changed = (new != seen) & self._allowed(prompts[-1:], region)
        changed = _follow_prompt(changed, new, prompts[-1], geometry, region)
        if self.protect_other_segments and self._protected is not None:
            changed &= ~(self._protected[crop] & new)
        result = mask[crop].copy()
        result[changed] = new[changed]
        return result

    def _image_on(self, region: LocalRegion, grid: Geometry, normalization: dict,
                  background: str = "zero") -> np.ndarray:
        """The image's crop of ``region`` on ``grid`` (its own grid: as it is; else resampled linearly, beyond the
        crop ``background``: ``"zero"`` or the crop's ``"minimum"``), normalised, read-only.

        With a region of interest every click sees the same crop and grids, so the last click's are
        kept (the two latest): on a 1 mm whole brain (a 7 M-voxel crop) the two resamplings and
        normalisations took about 0.1 s per click."""
        key = (tuple((s.start, s.stop) for s in region.crop), grid, repr(sorted(normalization.items())), background)
        with self._resampled_lock:
            return self._image_on_locked(key, region, grid, normalization, background)

    def _image_on_locked(self, key: tuple, region: LocalRegion, grid: Geometry, normalization: dict,
                         background: str) -> np.ndarray:
        if key not in self._resampled:
            crop_image = Volume(self._require_image().array[region.crop], region.crop_geometry)
            array = crop_image.array
            if not crop_image.geometry.same_grid(grid, tolerance_mm=1e-4):
                fill = float(array.min()) if background == "minimum" and array.size else 0.0
                array = resample_to(crop_image, grid, order=1, default_value=fill).array
            array = normalize(array, normalization)
            array.setflags(write=False)
            self._resampled = {k: v for k, v in list(self._resampled.items())[-1:]}
            self._resampled[key] = array
        return self._resampled[key]

    def _prompt_voxels(self, prompts: Sequence[Prompt], crop: Slices) -> Tuple[np.ndarray, np.ndarray]:
        """Voxels of the crop under the point and scribble prompts (object, background)."""
        start = np.array([s.start for s in crop])
        return _prompt_marks(prompts, tuple(s.stop - s.start for s in crop),
                             lambda points: self.geometry.ijk_to_array_index(points) - start)

    def _prompt_voxels_on(self, prompts: Sequence[Prompt], grid: Geometry) -> Tuple[np.ndarray, np.ndarray]:
        """Voxels of ``grid`` (any grid over the image) nearest to the point and scribble prompts."""
        return _prompt_marks(prompts, grid.shape, lambda points: grid.ijk_to_array_index(
            grid.lps_to_ijk(self.geometry.ijk_to_lps(np.asarray(points, dtype=float)))))

    def _allowed(self, prompts: Sequence[Prompt], region: LocalRegion) -> np.ndarray:
        """Where an update for ``prompts`` may change the mask: inside their 3D boxes (if any), and on
        a 2D box's slice only inside its rectangle."""
        k, j, i = (np.arange(s.start, s.stop) for s in region.crop)
        grids = {0: i[None, None, :], 1: j[None, :, None], 2: k[:, None, None]}
        shape = tuple(s.stop - s.start for s in region.crop)
        inside_3d = None
        allowed = np.ones(shape, dtype=bool)
        for prompt in prompts:
            if prompt.kind != "box":
                continue
            lo, hi, flat = box_extent(prompt.array[0], prompt.array[1])
            inside = np.ones(shape, dtype=bool)
            for axis in range(3):
                if axis != flat:
                    inside &= (grids[axis] >= lo[axis] - 0.5) & (grids[axis] <= hi[axis] + 0.5)
            if flat < 0:
                inside_3d = inside if inside_3d is None else inside_3d | inside
            else:
                on_slice = np.broadcast_to(grids[flat] == int(np.rint((lo[flat] + hi[flat]) / 2)), shape)
                allowed &= ~(on_slice & ~inside)
        return allowed if inside_3d is None else allowed & inside_3d
