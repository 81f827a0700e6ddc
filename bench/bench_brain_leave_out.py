"""The default model's recipe on a real head with a neck that it did not train on (leave-one-out).

The only T1 head with a neck in the registry data is ROBEX's (69 mm of head below its brain mask),
and the bundled ``brain-t1-extraction`` trains on it; FSL's MNI152 head, the card's test volume, is
cut through the brainstem. So the recipe is trained again without ROBEX (same settings and budget),
packaged by the same script (which also scores FSL's head and oblique phantoms), and both models are
run through the engine on ROBEX's head. Reported per model: Dice, HD95, the volumes missed and added,
what the mask puts below the reference brain's lowest slice (a leak into the neck), and the missed
voxels enclosed by the mask within a slice (holes such as the ventricles).

    python bench/bench_brain_leave_out.py --work /tmp/brain-loo --out docs/benchmarks/brain-leave-out.json
    python bench/brain_leave_out_report.py docs/benchmarks/brain-leave-out.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "SegmentAI"))
sys.path.insert(0, str(ROOT / "training"))
sys.path.insert(0, str(ROOT / "bench"))


def head_scores(package_dir: Path, case: str = "robex") -> dict:
    """Dice, HD95 and the neck and hole volumes (mL) of ``package_dir``'s model on a public head."""
    from segmentai_core.inference.canonical import canonical_geometry, resample_to
    from segmentai_core.inference.engine import Segmenter
    from segmentai_core.inference.postprocess import fill_slice_holes
    from segmentai_core.io import read_volume
    from segmentai_core.metrics import evaluate_labelmaps
    from segmentai_core.models.package import ModelPackage
    from segmentai_train.public_data import fetch_case

    image_path, mask_path = fetch_case(case)
    image, mask = read_volume(image_path), read_volume(mask_path)
    mask = mask.with_array((mask.array > 0).astype(np.uint8))
    predicted = Segmenter(ModelPackage.open(package_dir), device="cpu").segment(image).labelmap
    predicted = predicted.with_array((predicted.array > 0).astype(np.uint8))
    scores = evaluate_labelmaps(predicted, mask, labels=[1])[1]
    grid = canonical_geometry(mask.geometry, "RAS", [1.0, 1.0, 1.0])  # 1 mm voxels: counts are mm³
    truth = resample_to(mask, grid, order=0).array > 0
    ours = resample_to(predicted, grid, order=0).array > 0
    # Array axis 0 runs inferior → superior from the image's lowest slice: 1 voxel = 1 mm below it.
    lowest = int(np.flatnonzero(truth.any(axis=(1, 2)))[0])
    enclosed = fill_slice_holes(ours.astype(np.uint8), [1]) > 0  # the engine's own slice-hole definition
    return {
        "case": case, "dice": round(float(scores["dice"]), 4), "hd95_mm": round(float(scores["hd95"]), 2),
        "reference_ml": round(truth.sum() / 1000, 1), "predicted_ml": round(ours.sum() / 1000, 1),
        "missed_ml": round((truth & ~ours).sum() / 1000, 1), "added_ml": round((ours & ~truth).sum() / 1000, 1),
        "below_reference_brain_ml": round(ours[:lowest].sum() / 1000, 1),
        "image_below_reference_brain_mm": lowest,
        "missed_inside_slice_holes_ml": round((enclosed & ~ours & truth).sum() / 1000, 1),
    }


def run(work: Path, minutes: float) -> dict:
    from segmentai_train.recipes import brain_extraction, package_brain_extraction

    run_dir, models = work / "run-without-robex", work / "models"
    if not (run_dir / "final_state_dict.pt").is_file():
        brain_extraction.main(["--out", str(run_dir), "--minutes", str(minutes), "--leave-out", "robex"])
    package_brain_extraction.main([str(run_dir), str(models)])
    left_out = models / brain_extraction.MODEL_ID
    from segmentai_core.models.package import ModelPackage

    recipe = json.loads((run_dir / "recipe.json").read_text(encoding="utf-8"))
    return {
        "recipe_minutes": minutes, "epochs": len(recipe["history"]), "training_cases": recipe["training_cases"],
        "left_out": recipe.get("left_out", []),
        "without_robex": {"robex": head_scores(left_out),
                          "card": ModelPackage.open(left_out).manifest.to_dict()["accuracy"]},
        "bundled": {"robex": head_scores(ROOT / "Resources" / "Models" / brain_extraction.MODEL_ID)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/brain-leave-out"))
    parser.add_argument("--minutes", type=float, default=30.0, help="the recipe's budget (its default)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    results = run(args.work, args.minutes)
    text = json.dumps(results, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
