"""nnU-Net v2's postprocessing of the final label map, from the JSON steps the importer wrote.

The one step nnU-Net determines (``remove_all_but_largest_component``): the voxels of the
listed labels and regions (a region is the union of its labels) form one mask; every connected
component of that mask except the largest is set to ``background_label``. Components are
connected through faces, edges and corners (full connectivity, as ``skimage.measure.label``'s
default that nnU-Net uses), and several components of the same largest size are all kept.
Steps run in their order, each on the previous one's output.
"""

from __future__ import annotations

from typing import Any, Dict, Sequence

import numpy as np

from ..errors import InputError

__all__ = ["apply_nnunet_postprocessing", "keep_largest_of"]


def _mask(labels: np.ndarray, targets: Sequence[Any]) -> np.ndarray:
    mask = np.zeros(labels.shape, dtype=bool)
    for target in targets:
        values = target if isinstance(target, (list, tuple)) else [target]
        mask |= np.isin(labels, values)
    return mask


def keep_largest_of(labels: np.ndarray, targets: Sequence[Any], background: int = 0) -> np.ndarray:
    """Set all but the largest component(s) of the ``targets`` mask to ``background``, in place."""
    from scipy.ndimage import generate_binary_structure
    from scipy.ndimage import label as connected

    mask = _mask(labels, targets)
    if not mask.any():
        return labels
    components, _ = connected(mask, structure=generate_binary_structure(labels.ndim, labels.ndim))
    sizes = np.bincount(components.ravel())[1:]
    keep = np.flatnonzero(sizes == sizes.max()) + 1
    labels[mask & ~np.isin(components, keep)] = background
    return labels


def apply_nnunet_postprocessing(labels: np.ndarray, steps: Sequence[Dict[str, Any]]) -> np.ndarray:
    """Apply the manifest's ``x-nnunet.postprocessing`` steps to ``labels`` (in place; also returned)."""
    for step in steps:
        if step.get("function") != "remove_all_but_largest_component":
            raise InputError(f"nnU-Net postprocessing step '{step.get('function')}' is not supported")
        keep_largest_of(labels, step["labels_or_regions"], int(step.get("background_label", 0)))
    return labels
