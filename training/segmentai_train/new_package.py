"""The manifest of a fine-tuned model: the parent's, with new labels, version, lineage and results."""

from __future__ import annotations

import copy
import re
import time
from typing import Any, Dict, List, Optional

from segmentai_core.labels import SegmentLabel

__all__ = ["next_version", "below_parent_version", "finetuned_manifest"]


def next_version(version: str) -> str:
    """``1.2.3`` → ``1.2.4`` (pre-release and build parts dropped)."""
    match = re.match(r"^(\d+)\.(\d+)\.(\d+)", version)
    if not match:
        return "0.0.1"
    major, minor, patch = (int(g) for g in match.groups())
    return f"{major}.{minor}.{patch + 1}"


def below_parent_version(version: str) -> str:
    """A version that sorts *below* ``version`` (``1.0.0`` → ``1.0.0-worse``): a fine-tuned model that
    validated worse than its parent never outranks it, so ``--model ID`` keeps meaning the parent."""
    from segmentai_core.models.manifest import version_key

    match = re.match(r"^(\d+)\.(\d+)\.(\d+)(-[0-9A-Za-z.-]+)?", version)
    if not match:
        return "0.0.0-worse"
    base = ".".join(match.groups()[:3])
    candidate = f"{base}-worse" if match.group(4) is None else f"{base}-0.worse"
    return candidate if version_key(candidate) < version_key(version) else "0.0.0-worse"


def finetuned_manifest(parent, class_names: List[str], class_values: List[int], keep_head: bool,
                       training: Dict[str, Any], version: Optional[str] = None,
                       model_id: Optional[str] = None, grid: str = "canonical grid") -> Dict[str, Any]:
    """Manifest dict for the new package (weights are filled in by ``write_model_package``).

    ``training`` holds data_sha256, epochs, val_dice_before/after, validation mode, cases...; it
    goes into the ``x-training`` extension field, and the Dice figures also into ``accuracy``;
    ``grid`` says where validation Dice was measured.
    """
    data = copy.deepcopy(parent.to_dict())
    data["id"] = model_id or parent.id
    data["version"] = version or next_version(parent.version)
    data["parent"] = {"id": parent.id, "version": parent.version}
    if not keep_head:
        by_name = {label.name.lower(): label for label in parent.labels}
        labels = {}
        for value, name in zip(class_values, class_names):
            known = by_name.get(name.lower())
            entry: Dict[str, Any] = {"name": name, "color": list(known.color if known else
                                                                  SegmentLabel.default_for(value).color)}
            if known is not None and known.terminology is not None:
                entry["terminology"] = known.terminology.to_dict()
            labels[str(value)] = entry
        data["labels"] = labels
    parent_data = parent.training_data
    if isinstance(parent_data, str):
        parent_data = [{"name": f"{parent.full_id}: {parent_data}", "license": parent.license.get("weights", "?"),
                        "cases": 0}]
    data["training_data"] = list(parent_data) + [{
        "name": f"fine-tuning dataset '{training['dataset']}' (sha256 {training['data_sha256'][:12]}...)",
        "license": "user data", "cases": int(training["cases"])}]
    where = f"{training['validation']} validation on {training['val_cases']} case(s) of '{training['dataset']}'"
    data["accuracy"] = [{
        "dataset": where, "metric": "Dice", "value": round(float(training["val_dice_after"]), 4),
        "notes": f"before fine-tuning ({parent.full_id}): {training['val_dice_before']:.4f}; {grid}",
    }]
    data["created"] = time.strftime("%Y-%m-%d")
    worse = (f"WORSE THAN ITS PARENT on validation (Dice {training['val_dice_before']:.4f} -> "
             f"{training['val_dice_after']:.4f}); versioned below the parent, which stays the default. "
             if training.get("worse_than_parent") else "")
    data["notes"] = (worse + f"Fine-tuned from {parent.full_id} by segmentai-train for {training['epochs']} epochs on "
                     f"{training['cases']} case(s); validation Dice {training['val_dice_before']:.4f} -> "
                     f"{training['val_dice_after']:.4f} ({training['validation']}). The parent's accuracy "
                     "figures do not carry over. " + ((parent.notes or "") if keep_head else ""))[:4000].rstrip()
    if not keep_head:  # a new task: the parent's name and task describe another model (its caveats are dropped above)
        names = ", ".join(class_names)
        modality = training.get("modality") or parent.modality
        data["name"] = f"{names} ({modality}), fine-tuned"[:200]
        data["task"] = (f"Segmentation of {names} on {modality}, fine-tuned from {parent.full_id} on "
                        f"{training['cases']} corrected case(s).")
    data["x-training"] = training
    data.pop("weights", None)
    return data
