"""Markdown table of ``docs/benchmarks/brain-leave-out.json`` (written by ``bench_brain_leave_out.py``).

    python bench/brain_leave_out_report.py docs/benchmarks/brain-leave-out.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def report(results: dict) -> str:
    """Markdown table of a results file (pasted into docs/benchmarks.md between generated markers)."""
    fsl = next(a for a in results["without_robex"]["card"] if a["dataset"].startswith("FSL"))
    hd95 = fsl["notes"].split(",")[0]
    lines = [f"Recipe trained without ROBEX: {results['epochs']} epochs in a {results['recipe_minutes']:g}-minute "
             f"budget; on FSL's head (the card's test) it scores Dice {fsl['value']:.4f} ({hd95}).",
             "", "| model on ROBEX's head | trained on it | Dice | HD95 (mm) | reference / predicted (mL) | "
             "missed / added (mL) | predicted below the reference brain (mL; image reaches mm below) | "
             "missed inside slice holes (mL) |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, key, seen in (("the recipe without ROBEX", "without_robex", "no"), ("bundled model", "bundled", "yes")):
        s = results[key]["robex"]
        lines.append(f"| {name} | {seen} | {s['dice']:.4f} | {s['hd95_mm']:.1f} | {s['reference_ml']:.0f} / "
                     f"{s['predicted_ml']:.0f} | {s['missed_ml']:.0f} / {s['added_ml']:.1f} | "
                     f"{s['below_reference_brain_ml']:.1f} ({s['image_below_reference_brain_mm']} mm) | "
                     f"{s['missed_inside_slice_holes_ml']:.1f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(report(json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))))
