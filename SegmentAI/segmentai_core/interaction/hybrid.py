"""The hybrid engine: a seeded geodesic competition on the image's edges, with the interactive
network's probability as its data term where the image alone does not decide.

Per interaction, on the working grid (the whole region of interest when the session has one):

1. **geodesic** answer: object seeds at the positive clicks and scribbles, background seeds at the
   negative ones and outside the region of interest (or, without one, on the working grid's border
   where the previous mask does not reach it); each voxel takes the side whose seeds it reaches at the
   lower path cost (Grow-from-seeds' idea, :mod:`.geodesic`);
2. if that answer stays clear of the region's edge (at most ``leak_tolerance`` of the shell just
   inside the ROI: the ROI was drawn around the object, so an object that fills the shell has leaked
   into its surroundings), it is the answer: large homogeneous objects (a brain, a head) need no more,
   and the network is not run;
3. else the **hybrid** answer: the network predicts ``p``; where it is confident (``p`` above
   ``confident``: object; below ``1 - confident``: background) it adds seeds that start at a cost
   (``network_cost`` × its doubt), a step's cost adds ``probability_weight`` × the change of ``p``,
   and away from every prompt (``keep_distance_mm``) the previous mask stands;
4. the geodesic answer still wins when it touched the shell only a little (at most ``leak_limit``: an
   object cut by the image's edge) and is at most ``size_ratio`` times the hybrid's object.

The answer is the competition's soft map ``d_bg / (d_fg + d_bg)``. Without a network (``model=None``)
it is the geodesic answer alone. Measured choices (``bench/bench_interactive.py``,
``docs/benchmarks-interactive.md``): a finer working grid for small objects (0.75 mm) and a cost
floor on the network's background seeds were both worse.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

import numpy as np

from .geodesic import competition, edge_costs
from .predictors import PERCENTILE_NORMALIZATION, WorkingInputs
from .region import RegionSettings

__all__ = ["HybridPredictor"]


class HybridPredictor:
    """Network + geodesic competition (see the module docstring); the predictor protocol's interface.

    ``model``: a :class:`~.predictors.ModelPredictor` (or None: geodesic only). The working grid is the
    model's (its spacing, size and zoom), with ``max_zoom`` optionally raised to see larger objects whole.
    """

    def __init__(self, model=None, *, confident: float = 0.9, network_cost: float = 0.5,
                 probability_weight: float = 0.3, contrast: float = 1.0, length_per_mm: float = 0.002,
                 smoothing_voxels: float = 0.5, keep_distance_mm: float = 20.0, passes: int = 3,
                 max_zoom: Optional[float] = None, leak_tolerance: float = 0.02, leak_limit: float = 0.1,
                 size_ratio: float = 1.3, refine_band_voxels: float = 1.0) -> None:
        self.model = model
        if model is not None:
            settings = model.settings
            self.normalization = dict(model.normalization)
            self.sigma = model.sigma
            self.name = f"hybrid:{model.name}"
        else:
            settings = RegionSettings(spacing_mm=1.5, max_size=96, size_multiple=16, margin_mm=12.0,
                                      min_extent_mm=48.0, max_zoom=2.0)
            self.normalization = dict(PERCENTILE_NORMALIZATION)
            self.sigma = 1.5
            self.name = "geodesic"
        self.settings = settings if max_zoom is None else replace(settings, max_zoom=max_zoom)
        self.confident = confident
        self.network_cost = network_cost
        self.probability_weight = probability_weight
        self.contrast = contrast
        self.length_per_mm = length_per_mm
        self.smoothing_voxels = smoothing_voxels
        self.keep_distance_mm = keep_distance_mm
        self.passes = passes
        self.leak_tolerance = leak_tolerance
        self.leak_limit = leak_limit
        self.size_ratio = size_ratio
        self.refine_band_voxels = refine_band_voxels
        self.choose = True  # False: always the hybrid answer (for measurements)
        self.last_leak = 0.0
        self.last_network: Optional[np.ndarray] = None
        self.last_choice: Optional[str] = None

    def load(self) -> None:
        if self.model is not None:
            self.model.load()

    def predict(self, inputs: WorkingInputs) -> np.ndarray:
        from scipy import ndimage

        shape = inputs.image.shape
        positive, negative = inputs.positive > 0.5, inputs.negative > 0.5
        previous = inputs.previous > 0.5
        outside = inputs.outside if inputs.outside is not None and inputs.outside.any() else None
        self.last_network, self.last_choice = None, None
        if not positive.any() and not previous.any():
            return np.zeros(shape, dtype=np.float32)
        image = inputs.image.astype(np.float32)
        if self.smoothing_voxels > 0:
            image = ndimage.gaussian_filter(image, self.smoothing_voxels)
        spacing = (inputs.spacing_mm,) * 3
        border = np.ones(shape, dtype=bool)
        border[1:-1, 1:-1, 1:-1] = False
        # The shell just inside the region of interest (or inside the working grid's border, whose
        # voxels are background seeds, without one): an object that reaches it has leaked, for the
        # ROI was drawn around the object (and the working grid planned around it).
        edge = outside if outside is not None else border
        shell = ndimage.binary_dilation(edge) & ~edge
        geodesic, leaked = None, 1.0
        if self.model is None or self.choose:
            # From the clicks alone (the previous mask is the clicks' own earlier answer), unless no
            # positive prompt is in view: then the previous mask away from the prompts is the object.
            fg, bg = self._click_seeds(positive, negative, previous, outside, border, None,
                                       keep=not positive.any(), spacing_mm=inputs.spacing_mm)
            costs = edge_costs(image, spacing, self.contrast, self.length_per_mm)
            geodesic = competition(fg, bg, costs, self.passes)
            if self.model is None:
                return self._finish(geodesic, outside, "geodesic")
            leaked = float(np.count_nonzero((geodesic > 0.5) & shell)) / max(1, int(np.count_nonzero(shell)))
            self.last_leak = leaked
            if leaked <= self.leak_tolerance:
                return self._finish(geodesic, outside, "geodesic")
        probability = self.model.predict(inputs)
        self.last_network = probability
        fg, bg = self._click_seeds(positive, negative, previous, outside, border, probability, keep=True,
                                   spacing_mm=inputs.spacing_mm)
        extra = (np.float32(self.probability_weight) * probability,)
        costs = edge_costs(image, spacing, self.contrast, self.length_per_mm, extra)
        hybrid = competition(fg, bg, costs, self.passes)
        if geodesic is not None and leaked <= self.leak_limit:
            # Near the ROI's edge a little (an object cut by the image's edge), and about as large as the
            # hybrid's answer: the geodesic one has not leaked, and its boundary follows the image alone.
            ratio = np.count_nonzero(geodesic > 0.5) / max(1, np.count_nonzero(hybrid > 0.5))
            if ratio <= self.size_ratio:
                return self._finish(geodesic, outside, "geodesic")
        return self._finish(hybrid, outside, "hybrid")

    def refine_on_crop(self, image: np.ndarray, soft: np.ndarray, positive: np.ndarray, negative: np.ndarray,
                       spacing_kji, working_spacing_mm: float) -> np.ndarray:
        """Redraw the boundary on the crop's own voxels (finer than the working grid): the working
        grid's answer ``soft`` (resampled onto the crop) stands farther than ``band_voxels`` working
        voxels from its boundary (seeds of both sides there, with the prompts' voxels), and the
        geodesic competition on the crop's image decides the band between."""
        from scipy import ndimage

        if not self.refine_band_voxels:
            return soft
        inside = soft > 0.5
        if not inside.any():
            return soft
        band_mm = self.refine_band_voxels * working_spacing_mm
        sampling = np.asarray(spacing_kji, dtype=float)
        d_in = ndimage.distance_transform_edt(inside, sampling=sampling)
        d_out = ndimage.distance_transform_edt(~inside, sampling=sampling)
        inf = np.float32(np.inf)
        fg = np.where(inside & (d_in > band_mm), np.float32(0), inf).astype(np.float32)
        bg = np.where(~inside & (d_out > band_mm), np.float32(0), inf).astype(np.float32)
        fg[positive], bg[positive] = 0, inf
        bg[negative], fg[negative] = 0, inf
        if not np.isfinite(fg).any() or not np.isfinite(bg).any():
            return soft
        if self.smoothing_voxels > 0:
            image = ndimage.gaussian_filter(image.astype(np.float32), self.smoothing_voxels)
        costs = edge_costs(image, spacing_kji, self.contrast, self.length_per_mm)
        return competition(fg, bg, costs, self.passes)

    def _finish(self, soft: np.ndarray, outside: Optional[np.ndarray], choice: str) -> np.ndarray:
        self.last_choice = choice
        if outside is not None:
            soft[outside] = 0
        return soft

    def _click_seeds(self, positive, negative, previous, outside, border, probability, keep: bool,
                     spacing_mm: float = 1.0):
        """Start costs of the object and background sources (``inf``: not a source)."""
        from scipy import ndimage

        shape = positive.shape
        inf = np.float32(np.inf)
        fg = np.full(shape, inf, dtype=np.float32)
        bg = np.full(shape, inf, dtype=np.float32)
        if probability is not None:
            scale = np.float32(self.network_cost / (1 - self.confident))
            fg = np.where(probability >= self.confident, scale * (1 - probability), inf).astype(np.float32)
            bg = np.where(probability <= 1 - self.confident, scale * probability, inf).astype(np.float32)
        prompted = positive | negative
        if keep and previous.any() and self.keep_distance_mm and prompted.any():
            far = ndimage.distance_transform_edt(~prompted) * spacing_mm > self.keep_distance_mm
            fg[far & previous] = 0
            bg[far & ~previous] = 0
        if outside is not None:
            bg[outside] = 0
        else:
            holds = previous | (probability > 0.5 if probability is not None else False)
            bg[border & ~holds] = 0
        bg[negative] = 0
        fg[negative] = inf
        fg[positive] = 0
        bg[positive] = inf
        return fg, bg
