"""Predictors: turn the working-grid inputs (image, previous mask, guidance) into an object probability.

Two kinds share one small interface (``settings``, ``normalization``, ``sigma``, ``load()``,
``predict(inputs)``): :class:`ModelPredictor` runs an interactive model package;
:class:`RandomWalkerPredictor` is the classical fallback used when no such model is installed,
so that clicks always get an answer.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Optional, Protocol

import numpy as np

from ..errors import ModelError
from .region import RegionSettings

__all__ = [
    "INTERACTIVE_CHANNELS", "WorkingInputs", "Predictor", "ModelPredictor", "RandomWalkerPredictor",
    "is_interactive", "find_interactive_model",
]

INTERACTIVE_CHANNELS = ["image", "previous_mask", "positive_guidance", "negative_guidance"]
"""The input channels that make a model package an interactive one."""

PERCENTILE_NORMALIZATION = {"type": "percentile", "lower": 0.5, "upper": 99.5}


@dataclass
class WorkingInputs:
    """Float32 arrays on the working grid [k, j, i]: normalised image, previous mask (0..1), guidance;
    ``outside`` (bool, optional) marks the working voxels outside the session's region of interest,
    which are background; ``beyond_image`` (bool, optional) the working voxels outside the image itself
    (an object may reach the image's edge: a scan cuts organs, so that edge is no sign of a leak);
    ``hounsfield`` whether the session's image is CT in Hounsfield units."""

    image: np.ndarray
    previous: np.ndarray
    positive: np.ndarray
    negative: np.ndarray
    spacing_mm: float
    outside: Optional[np.ndarray] = None
    beyond_image: Optional[np.ndarray] = None
    hounsfield: bool = False


class Predictor(Protocol):
    settings: RegionSettings
    normalization: dict
    sigma: float
    name: str

    def load(self) -> None: ...

    def uses_network(self, hounsfield: bool) -> bool:
        """Whether :meth:`predict` runs a network on an image that is (or is not) CT in Hounsfield
        units: a process that never will need not import PyTorch or load weights."""
        ...

    def predict(self, inputs: WorkingInputs) -> np.ndarray: ...


def uses_network(predictor, hounsfield: bool) -> bool:
    """``predictor.uses_network(hounsfield)``, True for a predictor that does not say (it may)."""
    ask = getattr(predictor, "uses_network", None)
    return True if ask is None else bool(ask(hounsfield))


def is_interactive(manifest) -> bool:
    """True for a package whose network takes the four interactive channels and segments one object."""
    return list(manifest.input_channels) == INTERACTIVE_CHANNELS and manifest.num_classes == 2


def find_interactive_model(registry=None):
    """The highest-version valid interactive package of the registry (built-in or user), or None.

    Packages marked ``"experimental": true`` in their ``x-interactive`` block are skipped: they are
    used only when named (``--model ID``), so a model that measured worse than the random-walker
    fallback never becomes the default by being installed.
    """
    from ..models.manifest import version_key
    from ..models.registry import ModelRegistry

    registry = registry or ModelRegistry()
    found = [p for p in registry.list() if p.ok and is_interactive(p.manifest)
             and not p.manifest.interactive_settings.experimental]
    if not found:
        return None
    return max(found, key=lambda p: (not p.builtin, version_key(p.version)))


FLIP_AXES = ((2,), (1,), (0,))
"""Working-grid axes mirrored by test-time augmentation, in the order they are added."""


class ModelPredictor:
    """Runs an interactive model package; the network loads on first use, on the caller's thread
    (the session's worker), and stays loaded.

    ``flips`` (default: the package's ``x-interactive.test_time_flips``, else 0) averages the
    probability over that many mirrored copies of the inputs as well (1 to 3; each costs one more
    forward pass).
    """

    def __init__(self, package, device: str = "auto", flips: Optional[int] = None) -> None:
        manifest = package.manifest
        if not is_interactive(manifest):
            raise ModelError(
                f"model '{manifest.id}' is not an interactive model (its inputs are "
                f"{', '.join(manifest.input_channels)}; an interactive model takes {', '.join(INTERACTIVE_CHANNELS)})")
        extra = manifest.interactive_settings
        spacing = manifest.target_spacing
        if max(spacing) - min(spacing) > 1e-6:
            raise ModelError(f"model '{manifest.id}': an interactive model needs an isotropic target_spacing")
        self.package = package
        self.name = manifest.full_id
        self.device_request = device
        self.normalization = dict(manifest.normalization)
        self.sigma = extra.guidance_sigma_voxels
        self.flips = int(extra.test_time_flips if flips is None else flips)
        if not 0 <= self.flips <= len(FLIP_AXES):
            raise ModelError(f"test-time flips must be 0 to {len(FLIP_AXES)}, not {self.flips}")
        self.settings = RegionSettings(
            spacing_mm=float(spacing[0]), max_size=extra.max_size, size_multiple=int(max(manifest.size_divisor)),
            margin_mm=extra.margin_mm, min_extent_mm=extra.min_extent_mm, max_zoom=extra.max_zoom,
            orientation=manifest.orientation)
        self._network = None
        self.device: Optional[str] = None

    def load(self) -> None:
        if self._network is None:
            from ..inference.device import select_device

            device = select_device(self.device_request)
            self._network = self.package.load_network(device)
            self.device = str(device)

    def uses_network(self, hounsfield: bool) -> bool:
        return True

    def predict(self, inputs: WorkingInputs) -> np.ndarray:
        import torch

        self.load()
        stacked = np.stack([inputs.image, inputs.previous, inputs.positive, inputs.negative])
        with torch.inference_mode():
            x = torch.from_numpy(stacked)[None].to(self.device)
            probability = torch.softmax(self._network(x), dim=1)[0, 1]
            for axes in FLIP_AXES[: self.flips]:
                dims = [a + 2 for a in axes]  # (batch, channel, k, j, i)
                flipped = torch.softmax(self._network(torch.flip(x, dims)), dim=1)[0, 1]
                probability = probability + torch.flip(flipped, list(axes))
            probability = probability / (1 + self.flips)
        return probability.float().cpu().numpy()


class RandomWalkerPredictor:
    """Classical fallback: scikit-image's random walker from the seeds on the working grid.

    Seeds: the clicks and scribbles (object/background), the border of the working grid
    (background: the box around the clicks) or the outside of the session's region of interest,
    and the previous mask farther than ``keep_distance_mm`` from every prompt (object inside it,
    background outside), so a click changes the mask near the prompts only.
    """

    name = "random-walker"

    def __init__(self, spacing_mm: float = 1.5, max_size: int = 64, beta: float = 2000.0,
                 keep_distance_mm: float = 15.0) -> None:
        self.settings = RegionSettings(spacing_mm=spacing_mm, max_size=max_size, size_multiple=8,
                                       margin_mm=10.0, min_extent_mm=40.0, max_zoom=3.0)
        self.normalization = dict(PERCENTILE_NORMALIZATION)
        self.sigma = 1.0
        self.beta = beta
        self.keep_distance_mm = keep_distance_mm

    def load(self) -> None:
        pass

    def uses_network(self, hounsfield: bool) -> bool:
        return False

    def predict(self, inputs: WorkingInputs) -> np.ndarray:
        from scipy import ndimage
        from skimage.segmentation import random_walker

        positive, negative = inputs.positive > 0.5, inputs.negative > 0.5
        previous = inputs.previous > 0.5
        if not positive.any() and not previous.any():
            return np.zeros(inputs.image.shape, dtype=np.float32)
        seeds = np.zeros(inputs.image.shape, dtype=np.int32)
        if inputs.outside is not None and inputs.outside.any():
            border = inputs.outside  # the session's region of interest: outside it is background
        else:
            border = np.ones(seeds.shape, dtype=bool)
            border[1:-1, 1:-1, 1:-1] = False
        seeds[border & ~previous] = 2
        if previous.any():
            # Away from the prompts the previous mask stands (seeds of both kinds); near them the
            # walker decides again, so a click changes the mask around the click only.
            prompted = positive | negative
            near = ndimage.distance_transform_edt(~prompted) <= self.keep_distance_mm / inputs.spacing_mm
            seeds[~near & previous] = 1
            seeds[~near & ~previous] = 2
        seeds[negative] = 2
        seeds[positive] = 1
        if not (seeds == 1).any():
            return np.zeros(inputs.image.shape, dtype=np.float32)
        image = ndimage.gaussian_filter(inputs.image.astype(np.float64), 0.5)
        with warnings.catch_warnings():  # tolerance notes on badly conditioned seeds; the answer stands
            warnings.simplefilter("ignore", UserWarning)
            probability = random_walker(image, seeds, beta=self.beta, mode="cg_j", tol=1e-2,
                                        return_full_prob=True)
        return probability[0].astype(np.float32)
