"""Export benchmark: TorchScript and TorchScript + int8 dynamic quantisation vs the original package.

Segments held-out T1 head phantoms with each package through the engine on CPU and reports the
median time per volume and the Dice against the phantom masks (and against the original's output).

    python bench/bench_export.py --model brain-t1-extraction --threads 2 --out docs/benchmarks/export.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "SegmentAI"))
sys.path.insert(0, str(ROOT / "training"))
sys.path.insert(0, str(ROOT / "bench"))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="brain-t1-extraction")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cases", type=int, default=4)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from machine import describe
    from segmentai_core.inference.engine import Segmenter
    from segmentai_core.metrics import dice
    from segmentai_core.models.registry import ModelRegistry
    from segmentai_core.phantoms import head_phantom
    from segmentai_train.export import export_model

    source = ModelRegistry().get(args.model)
    cases = [head_phantom(seed=s) for s in range(5000, 5000 + args.cases)]
    work = Path(tempfile.mkdtemp(prefix="bench-export-"))
    packages = {"original": (source, {})}
    for name, quantize in (("torchscript", None), ("torchscript-int8", "int8")):
        report = export_model(source, work / name, "torchscript", quantize)
        from segmentai_core.models.package import ModelPackage

        packages[name] = (ModelPackage.open(work / name), report)
    results = {"machine": describe(), "model": source.full_id, "variants": {}}
    reference = None
    for name, (package, report) in packages.items():
        segmenter = Segmenter(package, device="cpu")
        segmenter.segment(cases[0][0])  # warm-up
        times, scores, agreement, outputs = [], [], [], []
        for image, mask in cases:
            t = time.perf_counter()
            labels = segmenter.segment(image).labelmap.array
            times.append(time.perf_counter() - t)
            scores.append(dice(labels > 0, mask.array > 0))
            outputs.append(labels)
        if reference is None:
            reference = outputs
        agreement = [dice(a > 0, b > 0) for a, b in zip(outputs, reference)]
        results["variants"][name] = {
            "median_s": round(statistics.median(times), 2), "dice": round(statistics.mean(scores), 4),
            "dice_vs_original": round(statistics.mean(agreement), 4),
            "size_mb": round(sum(p.stat().st_size for p in package.folder.iterdir()) / 1e6, 2),
            "quantized_layers": report.get("quantized_layers"), "max_abs_logit_diff": report.get("max_abs_logit_diff"),
        }
        print(name, json.dumps(results["variants"][name]), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
