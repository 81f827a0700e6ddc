"""Few-shot fine-tuning on real labelled volumes: the parent, fine-tuned, and trained from scratch.

For each case of ``finetune_real_cases.py`` (CT organs and an MR structure, "unseen part"; T1 brain
masks, "unseen case" with k = 1, 2, 3), the corrected cases go into a dataset through the dataset
API (as the Slicer module and ``segmentai dataset add`` do), then

  * **parent**: the bundled model as it is,
  * **fine-tuned**: ``segmentai-train finetune --minutes M`` with its defaults (data-aware set-up,
    held-aside validation, the budget filled),
  * **from scratch**: the same architecture, preprocessing and budget with freshly initialised
    weights (``--from-scratch``),

and every model segments the test volumes through the real engine (resampling, windows,
postprocessing, back on the input grid): Dice and HD95 per case, wall time of each run, and what
the data-aware set-up chose. One process, the cases in turn, ``--threads`` torch threads.

    python bench/bench_finetune_real.py --minutes 10 --out docs/benchmarks/finetune-real.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "SegmentAI"))
sys.path.insert(0, str(ROOT / "training"))
sys.path.insert(0, str(ROOT / "bench"))


def test_scores(package, tests) -> list:
    """Dice and HD95 (mm) of ``package`` on each test pair, through the engine."""
    from segmentai_core.inference.engine import Segmenter
    from segmentai_core.metrics import evaluate_labelmaps

    segmenter = Segmenter(package, device="cpu")
    scores = []
    for image, mask in tests:
        predicted = segmenter.segment(image).labelmap
        binary = predicted.with_array((predicted.array > 0).astype(np.uint8))
        metrics = evaluate_labelmaps(binary, mask, labels=[1])[1]
        scores.append({"dice": round(float(metrics["dice"]), 4),
                       "hd95_mm": None if metrics.get("hd95") is None else round(float(metrics["hd95"]), 2)})
    return scores


def run_training(source, data: Path, out: Path, minutes: float, from_scratch: bool, seed: int,
                 parent_anchor, bn_mode: str) -> dict:
    from segmentai_core.models.package import ModelPackage
    from segmentai_train.finetune import finetune

    t = time.perf_counter()
    result = finetune(source, data, out, time_limit_s=minutes * 60, fill_budget=True, from_scratch=from_scratch,
                      device="cpu", progress_bar=False, seed=seed, accept_worse=True, parent_anchor=parent_anchor,
                      bn_mode=bn_mode)
    seconds = time.perf_counter() - t
    package = ModelPackage.open(result.package_dir)
    training = package.manifest.extensions.get("x-training", {})
    return {"package": package, "wall_s": round(seconds, 1), "epochs": result.epochs,
            "best_epoch": training.get("best_epoch"), "validation": training.get("validation"),
            "val_dice_before": round(result.val_dice_before, 4), "val_dice_after": round(result.val_dice_after, 4),
            "plan": training.get("plan", []), "spacing": package.manifest.preprocessing["target_spacing"],
            "normalization": package.manifest.preprocessing["normalization"]}


def main(argv=None) -> None:
    from segmentai_train.finetune_config import FinetuneConfig

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="brain-t1-extraction")
    parser.add_argument("--cases", nargs="+", default=None, help="case names (default: all)")
    parser.add_argument("--minutes", type=float, default=10.0, help="budget of each training run")
    parser.add_argument("--no-scratch", action="store_true", help="skip the from-scratch runs")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="JSON results file (rewritten after each case)")
    parser.add_argument("--work", type=Path, default=None, help="keep datasets and runs here")
    parser.add_argument("--parent-anchor", type=float, default=None,
                        help="L2-SP weight of the fine-tuned runs (default: the training package's own choice)")
    parser.add_argument("--bn", choices=["train", "frozen"], default=FinetuneConfig.bn_mode,
                        help="batch-norm statistics of the runs (default: the training package's, %(default)s)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from finetune_real_cases import CASES, load_case
    from machine import describe
    from segmentai_core.dataset import add_case
    from segmentai_core.models.registry import ModelRegistry

    source = ModelRegistry().get(args.model)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-finetune-real-"))
    report = {"machine": describe(), "model": source.full_id, "minutes": args.minutes, "threads": args.threads,
              "seed": args.seed, "parent_anchor": args.parent_anchor, "bn": args.bn,
              "load_average_at_start": list(os.getloadavg()), "cases": []}
    for name in args.cases or list(CASES):
        case, corrected, tests = load_case(name)
        data = work / f"data-{name}"
        for image, mask in corrected:
            add_case(data, image, mask, {1: case.structure}, {"bench": "finetune_real"},
                     channel_names=["CT" if case.modality == "CT" else "T1"], allow_duplicate=True)
        row = {"case": name, "minutes": args.minutes, "modality": case.modality, "protocol": case.protocol,
               "structure": case.structure,
               "source": case.source, "corrected_cases": len(corrected),
               "test_voxels": [int(m.array.sum()) for _, m in tests],
               "parent": {"test": test_scores(source, tests)}}
        runs = [("finetuned", False)] + ([] if args.no_scratch else [("scratch", True)])
        for key, scratch in runs:
            run = run_training(source, data, work / f"run-{name}-{key}", args.minutes, scratch, args.seed,
                               args.parent_anchor, args.bn)
            run["test"] = test_scores(run.pop("package"), tests)
            row[key] = run
            print(json.dumps({"case": name, key: run}), flush=True)
        report["cases"].append(row)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
