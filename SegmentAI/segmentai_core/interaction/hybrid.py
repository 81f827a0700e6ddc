"""The hybrid engine: a seeded geodesic competition on the image's edges, with the interactive
network's probability as its data term where the image alone does not decide.

Per interaction, on the working grid (the whole region of interest when the session has one):

1. **geodesic** answer: object seeds at the positive clicks and scribbles, background seeds at the
   negative ones and outside the region of interest (or, without one, on the working grid's border
   where the previous mask does not reach it); each voxel takes the side whose seeds it reaches at the
   lower path cost (Grow-from-seeds' idea, :mod:`.geodesic`), with steps to the 26 neighbours as
   Grow-from-seeds takes them (``neighbourhood``), or to the 6 face neighbours where that answer
   reaches the leak shell below (point 2) less (``fallback_neighbourhood``);
   The object's paths also pay a **region term** (``region_weight``): entering a voxel whose
   intensity lies more than ``region_tolerance`` spreads from the intensity around a positive prompt
   costs the excess, so a leak through a weak edge into tissue of another density grows dear with
   its length (an organ beside an organ of almost its density in CT); a click's spread is capped at
   ``region_spread_cap`` times the other positive clicks' median, so one click in mixed tissue does
   not switch the term off;
2. if that answer stays clear of the region's edge (at most ``leak_tolerance``, 5 %, of the shell just
   inside the ROI: the ROI was drawn around the object, so an object that fills the shell has leaked
   into its surroundings), it is the answer: large homogeneous objects (a brain, a head) need no more,
   and the network is not run. Faces of the ROI that lie beyond the image are left out of the shell
   (``open_image_edge``): a scan cuts organs, and reaching its end is no leak;
3. else the **hybrid** answer: the network predicts ``p``; where it is confident (``p`` above
   ``confident``: object; below ``1 - confident``: background) it adds seeds that start at a cost
   (``network_cost`` × its doubt), a step's cost adds ``probability_weight`` × the change of ``p``,
   and away from every prompt (``keep_distance_mm``) the previous mask stands;
4. the two answers compete (``chooser``): with ``"contrast"`` (default) the geodesic answer wins when
   the image's mean gradient on its boundary is more than ``contrast_margin`` times that on the
   hybrid's (a leak's boundary crosses flat tissue, and so does a network blob's in an organ the
   network never saw: CT organs for the MRI-trained network) and it covers at most ``flood_limit`` of
   the leak shell (an answer that fills the ROI has no boundary inside it but around the ROI's holes,
   whose strong edges won it the comparison: the putamen's first click); with ``"leak"`` it wins when it touched
   the shell only a little (at most ``leak_limit``) and is at most ``size_ratio`` times the hybrid's.

The answer is the competition's soft map ``d_bg / (d_fg + d_bg)``. Without a network (``model=None``),
and in CT unless ``network_in_ct`` (the shipped network learnt on MRI heads and phantoms: on CT organs
its confident background wiped out the geodesic answer, CT liver Dice@1 0.04 against 0.53 without it),
it is the geodesic answer alone. Measured choices (``bench/bench_interactive.py``,
``docs/benchmarks-interactive.md``): a finer working grid for small objects (0.75 mm) and a cost
floor on the network's background seeds were both worse; on 31 real structures (5 clicks) the region
term, the open image edge and the contrast chooser together raised the mean Dice@5 from 0.615 to 0.688;
26-neighbour steps, with the 6-neighbour answer kept where it leaks less or, leaking as little, has the
stronger boundary, and the flood limit, raised Dice@5 from 0.701 to 0.723 and the CVPR protocol's DSC AUC
from 2.39 to 2.50 (the CT skull's Dice@5 0.32 -> 0.63, the CT head's 0.92 -> 0.96, the MR breast lesion's
0.54 -> 0.70); 26 neighbours alone lost (Dice@3 0.660 -> 0.619: atlas structures flooded through diagonal
gaps). The network's competition takes 26 neighbours too (``hybrid_neighbourhood``: Dice@5 0.710 with 6);
the boundary redraw on the crop (``refine_neighbourhood``) keeps 6: 26 there changed nothing and cost time.
A length term of 0 (the skull's Dice@5 0.82) lost on the abdominal CT organs (mean Dice@3 0.652); the
answer without it, taken only where its boundary's contrast is 1.1 times higher (``free_length_margin``),
raised the mean Dice@3 from 0.678 to 0.688 and brought the skull level with Grow-from-seeds.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import Callable, List, Optional, Tuple

import numpy as np

from .distance_memo import DistanceMemo, digest, once
from .geodesic import competition, edge_costs, soft_map, with_voxel_cost
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
                 max_zoom: Optional[float] = None, leak_tolerance: float = 0.05, leak_limit: float = 0.1,
                 size_ratio: float = 1.3, refine_band_voxels: float = 1.0, refine_max_voxels: int = 1_500_000,
                 region_weight: float = 1.0, region_tolerance: float = 2.0, region_radius_voxels: int = 2,
                 open_image_edge: bool = True, chooser: str = "contrast", contrast_margin: float = 2.5,
                 network_in_ct: bool = False, region_spread_cap: Optional[float] = 4.0,
                 neighbourhood: int = 26, refine_neighbourhood: int = 6, flood_limit: float = 0.5,
                 fallback_neighbourhood: Optional[int] = 6, hybrid_neighbourhood: int = 26,
                 leak_tie: float = 0.01, free_length_margin: Optional[float] = 1.1) -> None:
        if chooser not in ("contrast", "leak"):
            raise ValueError(f"chooser must be 'contrast' or 'leak', not {chooser!r}")
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
        # The boundary is redrawn on at most this many voxels: a larger crop (a whole brain at 1 mm
        # holds 7 M) is redrawn on a coarser grid over the same extent (see InteractionSession._paste).
        self.refine_max_voxels = refine_max_voxels
        self.region_weight = region_weight
        self.open_image_edge = open_image_edge
        self.chooser = chooser
        self.network_in_ct = network_in_ct
        self.region_spread_cap = region_spread_cap
        self.contrast_margin = contrast_margin
        self.neighbourhood = neighbourhood
        self.flood_limit = flood_limit
        self.fallback_neighbourhood = fallback_neighbourhood
        self.leak_tie = leak_tie
        self.free_length_margin = free_length_margin
        self.last_length = length_per_mm
        self.last_neighbourhood = neighbourhood
        self.hybrid_neighbourhood = hybrid_neighbourhood
        self.refine_neighbourhood = refine_neighbourhood
        self.last_scores = (0.0, 0.0)  # boundary contrast of the geodesic and the hybrid answers (chooser 'contrast')
        self.region_tolerance = region_tolerance
        self.region_radius_voxels = region_radius_voxels
        self.choose = True  # False: always the hybrid answer (for measurements)
        self.last_leak = 0.0
        self.last_network: Optional[np.ndarray] = None
        self.last_choice: Optional[str] = None
        self.last_candidates: list = []  # the geodesic answers weighed (for traces)
        self._distances = DistanceMemo()  # the geodesic answers' distances, kept between interactions
        self._refine_costs: Optional[tuple] = None  # (key, step costs) of the latest crop redrawn

    def load(self) -> None:
        if self.model is not None:
            self.model.load()

    def uses_network(self, hounsfield: bool) -> bool:
        """No network without a model, nor in CT unless ``network_in_ct`` (point 4 of the module
        docstring): there the geodesic answer is used alone."""
        return self.model is not None and (self.network_in_ct or not hounsfield)

    def predict(self, inputs: WorkingInputs) -> np.ndarray:
        from scipy import ndimage

        shape = inputs.image.shape
        positive, negative = inputs.positive > 0.5, inputs.negative > 0.5
        previous = inputs.previous > 0.5
        outside = inputs.outside if inputs.outside is not None and inputs.outside.any() else None
        self.last_network, self.last_choice = None, None
        if not positive.any() and not previous.any():
            return np.zeros(shape, dtype=np.float32)
        image = self._smoothed(inputs.image)
        spacing = (inputs.spacing_mm,) * 3
        border = np.ones(shape, dtype=bool)
        border[1:-1, 1:-1, 1:-1] = False
        # The shell just inside the region of interest (or inside the working grid's border, whose
        # voxels are background seeds, without one): an object that reaches it has leaked, for the
        # ROI was drawn around the object (and the working grid planned around it).
        edge = outside if outside is not None else border
        shell_edge = edge if inputs.beyond_image is None or not self.open_image_edge else edge & ~inputs.beyond_image
        shell = ndimage.binary_dilation(shell_edge) & ~edge
        if outside is None and inputs.beyond_image is not None and not shell.any() and inputs.beyond_image.any():
            # The working grid reaches beyond the image on every face (a small image): without a
            # shell there is no leak check, and a click near a weak edge floods the whole image
            # unseen. The image's own outermost voxels stand in: an object may reach the scan's end
            # in places, but one that covers more than ``leak_tolerance`` of it has spread.
            shell = ~inputs.beyond_image & ndimage.binary_dilation(inputs.beyond_image)
        # Computed at most once per interaction, each shared by every competition that needs it:
        # |grad image| (the neighbourhood tie-break and the chooser), the region term's voxel cost.
        gradient = functools.cache(lambda: _gradient_magnitude(image, spacing))
        region = functools.cache(lambda: self._region_cost(inputs.image, image, positive))
        geodesic, leaked = None, 1.0
        if self.model is None or self.choose:
            # From the clicks alone (the previous mask is the clicks' own earlier answer), unless no
            # positive prompt is in view: then the previous mask away from the prompts is the object.
            fg, bg = self._click_seeds(positive, negative, previous, outside, border, None,
                                       keep=not positive.any(), spacing_mm=inputs.spacing_mm)
            geodesic, leaked = self._geodesic_answer(image, spacing, fg, bg, shell, edge, gradient, region)
            self.last_leak = leaked
            if not self.uses_network(inputs.hounsfield):
                return self._finish(geodesic, outside, "geodesic")
            if leaked <= self.leak_tolerance:
                return self._finish(geodesic, outside, "geodesic")
        probability = self.model.predict(inputs)
        self.last_network = probability
        fg, bg = self._click_seeds(positive, negative, previous, outside, border, probability, keep=True,
                                   spacing_mm=inputs.spacing_mm)
        extra = (np.float32(self.probability_weight) * probability,)
        costs = edge_costs(image, spacing, self.contrast, self.length_per_mm, extra, self.hybrid_neighbourhood)
        hybrid = competition(fg, bg, costs, self.passes, _with_region(costs, region()))
        if geodesic is not None and self.chooser == "contrast":
            # The answer whose boundary lies on stronger image edges (a leak's boundary crosses flat
            # tissue; a network blob's boundary, in an organ the network does not know, too).
            g_score = _boundary_contrast(geodesic > 0.5, gradient(), edge)
            h_score = _boundary_contrast(hybrid > 0.5, gradient(), edge)
            self.last_scores = (g_score, h_score)
            if g_score > self.contrast_margin * h_score and leaked <= self.flood_limit:
                return self._finish(geodesic, outside, "geodesic")
            return self._finish(hybrid, outside, "hybrid")
        if geodesic is not None and leaked <= self.leak_limit:
            # Near the ROI's edge a little (an object cut by the image's edge), and about as large as the
            # hybrid's answer: the geodesic one has not leaked, and its boundary follows the image alone.
            ratio = np.count_nonzero(geodesic > 0.5) / max(1, np.count_nonzero(hybrid > 0.5))
            if ratio <= self.size_ratio:
                return self._finish(geodesic, outside, "geodesic")
        return self._finish(hybrid, outside, "hybrid")

    def _geodesic_answer(self, image: np.ndarray, spacing, fg: np.ndarray, bg: np.ndarray, shell: np.ndarray,
                         edge: np.ndarray, gradient: Callable[[], np.ndarray],
                         region: Callable[[], Optional[np.ndarray]]):
        """The clicks' geodesic answer and the share of the leak shell it covers (``gradient``: the
        image's |grad|, ``region``: the region term's voxel cost, each computed on first use).

        Computed on the 26 neighbours (``neighbourhood``) and on the 6 face neighbours
        (``fallback_neighbourhood``): the one that touches the shell less wins, and of two that touch it
        about as much (within ``leak_tie``) the one whose boundary lies on stronger image edges
        (``_boundary_contrast``; ties: the first). Diagonal steps follow a thin shell that face steps
        must leave (the CT skull), but they also cross weak edges that face steps do not (a positive
        click on a phantom's boundary voxel flooded its background; a low-contrast object without an
        ROI grew fourfold into flat tissue).

        Then, where that answer is clean (it covers at most ``leak_tolerance`` of the shell), the
        26-neighbour answer without the length term: it replaces that answer when it leaks no more
        (within ``leak_tie``) and its boundary's contrast is more than ``free_length_margin`` times
        the other's (None: never computed). The length term keeps paths through weak edges from
        spreading (the abdominal CT organs), but it also stops a thin, long object short of its far
        parts: the CT skull's bone, 200 mm around the brain, lost to the brain's shorter paths. Only a
        boundary on clearly stronger edges (the bone's) sets the term aside: on the bench (31 cases)
        the skull's Dice@5 0.63 -> 0.81 (Grow-from-seeds 0.79) with a margin of 1.1, the same with
        1.05 and 1.15 (but with 1.15 the CT head falls 0.04 behind Grow-from-seeds), while a margin of 1.0 lost
        on the abdominal CT (its spleen and muscle boundaries score within 6 % either way), and choosing
        it by the leak alone lost more (the CT spleen's CVPR final DSC 0.53 -> 0.33). It costs a third
        solve: the latency's p50 0.21 -> 0.33 s, p95 0.44 -> 0.76 s; computed only for a clean answer, it never won on a
        leaking one on the bench."""
        self.last_candidates = []
        keys = _SideKeys(self._image_key(image, spacing), digest(fg), digest(region()), digest(bg))

        def solve_all(specs, ahead=()):
            """The answers of ``specs``; the distances of ``ahead`` are computed in the same batch (kept in
            the memo for a later call: two threads finish a batch sooner than two batches)."""
            jobs, pairs = [], []
            for neighbourhood, length in list(ahead) + list(specs):
                costs = self._costs(image, spacing, neighbourhood, length)
                object_costs = once(lambda costs=costs: _with_region(costs(), region()) if region() is not None
                                    else costs())
                pair = (keys.object(neighbourhood, length), keys.background(neighbourhood, length))
                jobs += [(pair[0], fg, object_costs), (pair[1], bg, costs)]
                pairs.append(pair)
            found = self._distances.distances(jobs, self.passes)
            return [record(soft_map(found[pair[0]], found[pair[1]]), *spec)
                    for pair, spec in zip(pairs[len(ahead):], specs)]

        def record(answer: np.ndarray, neighbourhood: int, length: float):
            leak = float(np.count_nonzero((answer > 0.5) & shell)) / max(1, int(np.count_nonzero(shell)))
            trace = {"neighbourhood": neighbourhood, "length": length, "leak": leak,
                     "size": int(np.count_nonzero(answer > 0.5))}
            self.last_candidates.append(trace)
            return answer, leak, neighbourhood, trace

        def contrast(candidate) -> float:
            if "contrast" not in candidate[3]:
                candidate[3]["contrast"] = _boundary_contrast(candidate[0] > 0.5, gradient(), edge)
            return candidate[3]["contrast"]

        specs = self._geodesic_specs()
        if self._free_length():  # its distances ahead when the last answer was clean (it is needed then)
            candidates = solve_all(specs[:-1], ahead=specs[-1:] if self.last_leak <= self.leak_tolerance else ())
        else:
            candidates = solve_all(specs)
        least = min(c[1] for c in candidates)
        tied = [c for c in candidates if c[1] <= least + self.leak_tie]
        best = tied[int(np.argmax([contrast(c) for c in tied]))] if len(tied) > 1 else tied[0]  # ties: the first
        if self._free_length() and best[1] <= self.leak_tolerance:
            (free,) = solve_all(specs[-1:])
            if free[1] <= best[1] + self.leak_tie and contrast(free) > self.free_length_margin * contrast(best):
                best = free
        self.last_neighbourhood = best[2]
        self.last_length = best[3]["length"]
        return best[0], best[1]

    def _free_length(self) -> bool:
        """Whether a clean geodesic answer is weighed against the one without the length term."""
        return self.free_length_margin is not None and bool(self.length_per_mm)

    def _geodesic_specs(self) -> List[Tuple[int, float]]:
        """(neighbourhood, length per mm) of the geodesic answer's competitions, in the order weighed;
        the last is the one without the length term when that is weighed (see :meth:`_geodesic_answer`)."""
        specs = [(n, self.length_per_mm) for n in dict.fromkeys((self.neighbourhood, self.fallback_neighbourhood))
                 if n is not None]
        return specs + [(self.neighbourhood, 0.0)] if self._free_length() else specs

    def _image_key(self, image: np.ndarray, spacing) -> tuple:
        """What a competition's step costs depend on besides its neighbourhood and length (the memo's key)."""
        return digest(image), tuple(float(s) for s in spacing), float(self.contrast)

    def _costs(self, image: np.ndarray, spacing, neighbourhood: int, length: float):
        """The step costs of one competition, computed on first use (at most once)."""
        return once(functools.partial(edge_costs, image, spacing, self.contrast, length, neighbourhood=neighbourhood))

    def _smoothed(self, image: np.ndarray) -> np.ndarray:
        """The working image as the competitions see it (float32, smoothed by ``smoothing_voxels``)."""
        from scipy import ndimage

        image = image.astype(np.float32)
        return ndimage.gaussian_filter(image, self.smoothing_voxels) if self.smoothing_voxels > 0 else image

    def prepare(self, inputs: WorkingInputs) -> None:
        """Compute ahead, for a view with a region of interest, the distances that the first positive
        click in it will need: the background's, whose seeds are the region's outside (a positive click
        adds none). The session calls this when the region is set, on its worker, while the user aims;
        the first click then finds them in the memo (on a whole brain at 1 mm, half of its
        competitions' work)."""
        outside = inputs.outside if inputs.outside is not None and inputs.outside.any() else None
        if outside is None:
            return
        image = self._smoothed(inputs.image)
        spacing = (inputs.spacing_mm,) * 3
        bg = np.full(image.shape, np.float32(np.inf), dtype=np.float32)
        bg[outside] = 0
        keys = _SideKeys(self._image_key(image, spacing), None, None, digest(bg))
        self._distances.distances([(keys.background(n, length), bg, self._costs(image, spacing, n, length))
                                   for n, length in self._geodesic_specs()], self.passes)

    def refine_on_crop(self, image: np.ndarray, soft: np.ndarray, positive: np.ndarray, negative: np.ndarray,
                       spacing_kji, working_spacing_mm: float) -> np.ndarray:
        """Redraw the boundary on the crop's own voxels (finer than the working grid): the working
        grid's answer ``soft`` (resampled onto the crop) stands farther than ``band_voxels`` working
        voxels from its boundary (seeds of both sides there, with the prompts' voxels), and the
        geodesic competition on the crop's image decides the band between."""
        if not self.refine_band_voxels:
            return soft
        inside = soft > 0.5
        if not inside.any():
            return soft
        band_mm = self.refine_band_voxels * working_spacing_mm
        sampling = np.asarray(spacing_kji, dtype=float)
        inf = np.float32(np.inf)
        fg = np.where(_deeper_than(inside, band_mm, sampling), np.float32(0), inf).astype(np.float32)
        bg = np.where(_deeper_than(~inside, band_mm, sampling), np.float32(0), inf).astype(np.float32)
        fg[positive], bg[positive] = 0, inf
        bg[negative], fg[negative] = 0, inf
        if not np.isfinite(fg).any() or not np.isfinite(bg).any():
            return soft
        # The crop's image is the same at every click of a view: its step costs are kept (the latest).
        key = (digest(image), tuple(float(s) for s in spacing_kji), self.smoothing_voxels, self.contrast,
               self.length_per_mm, self.refine_neighbourhood)
        if self._refine_costs is None or self._refine_costs[0] != key:
            image = self._smoothed(image) if self.smoothing_voxels > 0 else image
            self._refine_costs = (key, edge_costs(image, spacing_kji, self.contrast, self.length_per_mm,
                                                  neighbourhood=self.refine_neighbourhood))
        return competition(fg, bg, self._refine_costs[1], self.passes)

    def _object_costs(self, costs, raw: np.ndarray, smoothed: np.ndarray, positive: np.ndarray):
        """The object's step costs with a region term: entering a voxel whose intensity lies more than
        ``region_tolerance`` spreads from every positive prompt's own intensity costs
        ``region_weight`` × the excess (None without a weight or a positive prompt).

        Edges alone let the object leak through weak boundaries (an organ beside another of almost the
        same density in CT); the region term makes every voxel of the wrong intensity on the way cost,
        so a leak grows dear with its length. Each prompt (connected piece of the positive guidance)
        has its own intensity and spread (the median and MAD of the raw image around it, floored by
        the image's noise), so an object of several intensities is clicked part by part. With other
        positive prompts, a spread is capped at ``region_spread_cap`` times their median spread: a
        click whose surroundings are mixed tissue (the MR spleen's fifth click on the bench: spread
        0.24 against 0.01-0.05 for the earlier ones) would otherwise admit nearly every intensity, and
        the object spread through weak edges. Relative to the other clicks, not to the image's
        intensity range: a cap of a tenth of that range (measured) narrowed a thin tube's
        partial-volume edge, whose every click sees mixed tissue (None: no cap)."""
        return _with_region(costs, self._region_cost(raw, smoothed, positive))

    def _region_cost(self, raw: np.ndarray, smoothed: np.ndarray, positive: np.ndarray) -> Optional[np.ndarray]:
        """The region term's cost per voxel (see :meth:`_object_costs`; None without a weight or a
        positive prompt)."""
        from scipy import ndimage

        if not self.region_weight or not positive.any():
            return None
        pieces, count = ndimage.label(positive)
        grown = ndimage.grey_dilation(pieces, size=(2 * self.region_radius_voxels + 1,) * 3)
        noise = float(np.median(np.abs(np.diff(raw, axis=-1)))) * 1.4826 / np.sqrt(2.0)
        excess = np.full(raw.shape, np.inf, dtype=np.float32)
        stats = []
        for piece in range(1, min(count, 32) + 1):
            values = raw[grown == piece]
            centre = float(np.median(values))
            stats.append((centre, max(float(np.median(np.abs(values - centre))) * 1.4826, noise, 1e-6)))
        spreads = np.array([spread for _, spread in stats])
        for n, (centre, spread) in enumerate(stats):
            if self.region_spread_cap and len(stats) > 1:  # at most that many times the other prompts' median
                spread = min(spread, self.region_spread_cap * float(np.median(np.delete(spreads, n))))
            np.minimum(excess, np.abs(smoothed - np.float32(centre)) - np.float32(self.region_tolerance * spread),
                       out=excess)
        return np.float32(self.region_weight) * np.maximum(excess, np.float32(0))

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


# Above this many voxels in the ball an erosion costs about what the distance transform does.
_EROSION_MAX_BALL = 400


def _deeper_than(mask: np.ndarray, depth_mm: float, sampling: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` farther than ``depth_mm`` from every voxel outside it: exactly
    ``mask & (distance_transform_edt(mask, sampling) > depth_mm)``, as an erosion by the ball of
    voxel offsets within ``depth_mm`` (the distances computed as SciPy computes them; beyond the
    array counts as inside, as for the transform). On a whole brain at 1 mm (7 M voxels) the two
    transforms took 1.1 s, the erosions 0.13 s; a large ball falls back to the transform."""
    from scipy import ndimage

    radius = np.floor(depth_mm / sampling).astype(int)
    offsets = np.stack(np.meshgrid(*[np.arange(-r, r + 1) for r in radius], indexing="ij"), axis=-1)
    ball = np.sqrt(((offsets * sampling) ** 2).sum(axis=-1)) <= depth_mm
    if int(ball.sum()) > _EROSION_MAX_BALL:
        return mask & (ndimage.distance_transform_edt(mask, sampling=sampling) > depth_mm)
    return ndimage.binary_erosion(mask, structure=ball, border_value=1)


def _with_region(costs, voxel_cost: Optional[np.ndarray]):
    """The object's step costs: ``costs`` with the region term's ``voxel_cost`` (None: no region term)."""
    return None if voxel_cost is None else with_voxel_cost(costs, voxel_cost)


def _gradient_magnitude(image: np.ndarray, spacing) -> np.ndarray:
    """|grad image| per voxel (central differences, per mm)."""
    parts = np.gradient(image, *spacing)
    return np.sqrt(sum(p * p for p in parts)).astype(np.float32)


def _boundary_contrast(mask: np.ndarray, magnitude: np.ndarray, edge: np.ndarray) -> float:
    """Mean gradient magnitude on the mask's boundary voxels, leaving out those next to ``edge``
    (the ROI's outside, whose boundary is the user's, not the image's); 0 for an empty boundary."""
    from scipy import ndimage

    boundary = mask & ~ndimage.binary_erosion(mask) & ~ndimage.binary_dilation(edge)
    return float(magnitude[boundary].mean()) if boundary.any() else 0.0


class _SideKeys:
    """The memo's keys of a competition's two distances: what each side's distance depends on."""

    def __init__(self, image_key: tuple, object_init: Optional[bytes], region_cost: Optional[bytes],
                 background_init: Optional[bytes]) -> None:
        self._image, self._object, self._region, self._background = image_key, object_init, region_cost, background_init

    def object(self, neighbourhood: int, length: float) -> tuple:
        return ("object", self._image, neighbourhood, length, self._object, self._region)

    def background(self, neighbourhood: int, length: float) -> tuple:
        return ("background", self._image, neighbourhood, length, self._background)
