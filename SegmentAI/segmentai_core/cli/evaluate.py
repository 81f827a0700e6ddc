"""``segmentai evaluate PRED REF``: Dice, IoU, pixel accuracy, HD95, ASSD, surface Dice, sensitivity, precision."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import Dict, List, Optional, Sequence

from ..errors import InputError
from ..labels import SegmentLabel

__all__ = ["register", "run"]


def register(subparsers) -> None:
    """Add the ``evaluate`` sub-command."""
    parser = subparsers.add_parser(
        "evaluate",
        help="compare a segmentation with a reference",
        description="Compare a predicted segmentation with a reference, label by label "
        "(.seg.nrrd or label-map files on the same voxel grid). Distances are in mm.",
    )
    parser.add_argument("pred", metavar="PRED", help="predicted segmentation")
    parser.add_argument("ref", metavar="REF", help="reference (ground-truth) segmentation")
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON (inf distances as null)")
    parser.add_argument(
        "--tolerance", metavar="MM", type=float, default=1.0, help="surface Dice tolerance in mm (default: 1)"
    )
    parser.add_argument(
        "--labels", metavar="1,2", default=None, help="label values to evaluate (default: all found in either file)"
    )
    parser.set_defaults(func=run)


def _parse_labels(text: Optional[str]) -> Optional[List[int]]:
    if text is None:
        return None
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InputError(f"--labels expects comma-separated integers such as 1,2, got {text!r}") from None
    if not values:
        raise InputError("--labels is empty")
    return values


def _names(*label_lists: Sequence[SegmentLabel]) -> Dict[int, str]:
    """Segment names by value; the first list (the prediction's) wins."""
    names: Dict[int, str] = {}
    for labels in reversed(label_lists):
        names.update({label.value: label.name for label in labels})
    return names


def _number(value: float, digits: int = 4) -> str:
    if math.isnan(value):
        return "-"
    return "inf" if math.isinf(value) else f"{value:.{digits}f}"


def format_table(results: Dict, names: Dict[int, str], tolerance_mm: float) -> str:
    """The metrics as an aligned text table, one row per label and a final mean row."""
    header = ["Label", "Name", "Dice", "IoU", "PixAcc", "HD95 mm", "ASSD mm", f"SurfDice@{tolerance_mm:g}mm",
              "Sens", "Prec", "Pred vox", "Ref vox"]
    rows = [header]
    for key, m in results.items():
        counts = [str(m["voxels_pred"]), str(m["voxels_ref"])] if key != "mean" else ["", ""]
        rows.append(
            [str(key), names.get(key, "") if key != "mean" else "", _number(m["dice"]), _number(m["iou"]),
             _number(m["pixel_accuracy"]), _number(m["hd95"], 2), _number(m["assd"], 2), _number(m["surface_dice"]),
             _number(m["sensitivity"]), _number(m["precision"]), *counts]
        )
    widths = [max(len(row[c]) for row in rows) for c in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if c < 2 else cell.rjust(w) for c, (cell, w) in enumerate(zip(row, widths)))
             for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def run(args: argparse.Namespace) -> int:
    """Read both files, compute the metrics and print them (table or JSON)."""
    from ..io import read_segmentation
    from ..metrics import evaluate_labelmaps, to_jsonable

    labels = _parse_labels(args.labels)
    pred, pred_labels = read_segmentation(args.pred)
    ref, ref_labels = read_segmentation(args.ref)
    results = evaluate_labelmaps(
        pred, ref, labels=labels, tolerance_mm=args.tolerance,
        pred_name=os.path.basename(args.pred), ref_name=os.path.basename(args.ref),
    )
    names = _names(pred_labels, ref_labels)
    if args.json:
        payload = {
            "prediction": args.pred,
            "reference": args.ref,
            "tolerance_mm": args.tolerance,
            "names": {str(v): n for v, n in names.items()},
            "metrics": to_jsonable(results),
        }
        print(json.dumps(payload, indent=2))
    else:
        print(f"Prediction: {args.pred}\nReference:  {args.ref}\n")
        print(format_table(results, names, args.tolerance))
    sys.stdout.flush()
    return 0
