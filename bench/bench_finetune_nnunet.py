"""Fine-tuning an imported nnU-Net v2 model on a domain it misses: Dice before/after, time per epoch.

The tiny nnU-Net model (``Testing/Python/nnunet_tiny.py``, trained by ``nnunetv2`` itself on
CT-like phantoms with a bright sphere and a dark box) is imported with ``segmentai models
import``'s converter. The new domain: the same phantoms with the sphere ``--shift`` HU darker
(below the background), which the model does not find. Fine-tune on ``--cases`` corrected cases
(exact masks, added through the dataset API), then segment held-out phantoms of the new domain
through the engine (the nnU-Net pipeline: resampling, Gaussian windows, mirroring) with the parent
(both folds) and the fine-tuned package (one fold).

    python bench/bench_finetune_nnunet.py --threads 2 --out docs/benchmarks/finetune-nnunet.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "SegmentAI"), str(ROOT / "training"), str(ROOT / "Testing" / "Python"),
                str(Path(__file__).parent)]

HELD_OUT = range(5000, 5006)
CORRECTED = range(6000, 6010)


def shifted(folder: Path, seed: int, shift: float):
    """A tiny-dataset phantom with its 'bright' sphere ``shift`` HU darker, as NIfTI volumes."""
    import nnunet_tiny

    from segmentai_core.io import read_volume

    image, labels = nnunet_tiny.phantom((32, 32, 12), seed)
    image = image.astype(np.float32)
    image[labels == 1] -= shift
    nnunet_tiny.write_nifti(image.astype(np.int16), folder / f"image_{seed}.nii.gz")
    nnunet_tiny.write_nifti(labels, folder / f"label_{seed}.nii.gz")
    return read_volume(folder / f"image_{seed}.nii.gz"), read_volume(folder / f"label_{seed}.nii.gz")


def held_out_dice(package, cases) -> dict:
    """Mean Dice per label over the held-out cases, through the engine."""
    from segmentai_core.inference.engine import Segmenter

    segmenter = Segmenter(package, device="cpu")
    scores = {1: [], 2: []}
    for image, reference in cases:
        predicted = segmenter.segment(image).labelmap.array
        for value in scores:
            a, b = predicted == value, reference.array == value
            scores[value].append(2.0 * (a & b).sum() / max(1, a.sum() + b.sum()))
    return {name: round(float(np.mean(scores[value])), 4) for value, name in ((1, "bright"), (2, "dark"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cases", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--shift", type=float, default=350.0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    import machine
    import nnunet_tiny

    from segmentai_core.dataset import add_case
    from segmentai_core.importers import convert_model
    from segmentai_core.models import ModelPackage
    from segmentai_train.finetune import finetune

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        parent = convert_model(nnunet_tiny.build_tiny_model(root / "nnunet"), root / "parent")
        build_s = time.perf_counter() - start
        (root / "raw").mkdir()
        for seed in list(CORRECTED)[: args.cases]:
            image, label = shifted(root / "raw", seed, args.shift)
            add_case(root / "data", image, label, {1: "bright", 2: "dark"}, channel_names=("CT",))
        held_out = [shifted(root / "raw", seed, args.shift) for seed in HELD_OUT]
        before = held_out_dice(parent, held_out)
        start = time.perf_counter()
        result = finetune(str(parent.folder), root / "data", root / "run", epochs=args.epochs,
                          iterations_per_epoch=args.iterations, warmup_iterations=2, learning_rate=3e-3,
                          patience=0, device="cpu", progress_bar=False)
        wall = time.perf_counter() - start
        after = held_out_dice(ModelPackage.open(result.package_dir), held_out)
        seconds = [row["seconds"] for row in result.history]
        per_epoch = np.diff([0.0] + seconds)  # training + validation of each epoch
        report = {
            "model": parent.full_id, "shift_hu": args.shift, "cases": args.cases, "held_out_cases": len(HELD_OUT),
            "epochs": result.epochs, "iterations_per_epoch": args.iterations, "threads": args.threads,
            "held_out_dice_before": before, "held_out_dice_after": after,
            "val_dice_before": round(result.val_dice_before, 4), "val_dice_after": round(result.val_dice_after, 4),
            "seconds_per_epoch_median": round(float(np.median(per_epoch)), 3),
            "finetune_wall_s": round(wall, 1), "tiny_model_build_s": round(build_s, 1),
            "machine": machine.describe(),
        }
    print(json.dumps(report, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
