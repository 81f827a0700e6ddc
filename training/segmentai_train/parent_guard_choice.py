"""The parent guard's reach for a package fine-tuned on its parent's own label, measured on the corrections.

The parent predicts each whole corrected case on the canonical grid;
how far the corrected labels reach beyond that answer is what the user's corrections say the
parent can be wrong by. Its 99.9th percentile becomes ``postprocessing.parent_guard`` of the new
package (:mod:`segmentai_core.inference.parent_guard`), so that the fine-tuned model adds no
foreground farther than that from the parent's answer on the next scan.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Mapping, Optional, Sequence

import numpy as np
import torch

from segmentai_core.geometry import ijk_to_kji
from segmentai_core.inference.parent_guard import correction_distance, parent_foreground

__all__ = ["measure_parent_guard"]


def measure_parent_guard(parent_manifest: Any, child_manifest: Mapping[str, Any],
                         parent_network: Callable[[], torch.nn.Module],
                         predict_logits: Callable[[torch.nn.Module, np.ndarray], np.ndarray],
                         cases: Sequence[Any], say: Callable[[str], None]) -> Optional[Dict[str, Any]]:
    """The guard of a new package, or None (said why) when it does not apply: the parent must be a
    binary model whose preprocessing the new package keeps (the parent, built by ``parent_network``,
    then predicts on the cases' canonical arrays as they are)."""
    if parent_manifest.num_classes != 2:
        say("  no parent guard: the parent has more than one label")
        return None
    if dict(child_manifest["preprocessing"]) != dict(parent_manifest.preprocessing):
        say("  no parent guard: the new package prepares its input otherwise than the parent")
        return None
    spacing_kji = tuple(float(s) for s in ijk_to_kji(child_manifest["preprocessing"]["target_spacing"]))
    network = parent_network()
    pairs = []
    for case in cases:
        logits = torch.from_numpy(predict_logits(network, case.image))
        probabilities = torch.softmax(logits, dim=0).numpy()
        pairs.append((parent_foreground(probabilities, parent_manifest.largest_component), case.label > 0))
    reach, farthest, outside = correction_distance(pairs, spacing_kji)
    say(f"  parent guard: {outside} corrected voxels lie outside the parent's answer, at most {farthest:.1f} mm "
        f"(99.9 %: {reach:.1f} mm); the new model's foreground is kept within {reach:.1f} mm of the parent's")
    return {"distance_mm": round(reach, 2), "farthest_mm": round(farthest, 2), "voxels_outside": outside}
