"""nnU-Net v2's own predictor vs SegmentAI on the same imported nnU-Net model and a 256×256×128 case.

Each side runs in a fresh subprocess (time from reading the file to the label map in memory,
model loading included; peak RSS of that process), with the same threads, folds and mirroring.
The model is a small nnU-Net v2 model trained here by ``nnunetv2`` itself on generated
anisotropic CT-like data (Testing/Python/nnunet_tiny.py), so the benchmark runs anywhere.

    python bench/bench_nnunet.py --work /tmp/segmentai-bench-nnunet --out docs/benchmarks/nnunet.json
    python bench/nnunet_report.py docs/benchmarks/nnunet.json    # docs/benchmarks-nnunet.md below its title

Needs ``nnunetv2`` (a test dependency) installed beside SegmentAI.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "SegmentAI"), str(ROOT / "Testing" / "Python"), str(Path(__file__).parent)]

from machine import peak_rss_mib  # noqa: E402  (the process's own peak, not one inherited at fork)
from nnunet_report import CASE_SPACING_XYZ, MODEL_FEATURES  # noqa: E402  (the page states them)

# CASE_SPACING_XYZ differs from the model's (3.5, 1, 1): both resamplings run.
MODEL_SHAPE_KJI = (64, 64, 24)


def run_nnunet(args) -> np.ndarray:
    import torch
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=args.mirror,
                                perform_everything_on_device=False, device=torch.device("cpu"),
                                verbose=False, allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(args.model, use_folds=tuple(args.folds),
                                                   checkpoint_name="checkpoint_final.pth")
    image, properties = SimpleITKIO().read_images([args.case])
    return predictor.predict_single_npy_array(image, properties, None, None, False)


def run_segmentai(args) -> np.ndarray:
    from segmentai_core.inference.engine import Segmenter
    from segmentai_core.io.volume_io import read_volume
    from segmentai_core.models import ModelPackage

    package = ModelPackage.open(args.package)
    if not args.mirror:
        package.manifest.extensions["x-nnunet"]["mirror_axes"] = []
    return Segmenter(package, device="cpu").segment(read_volume(args.case)).labelmap.array


def child(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    os.environ["nnUNet_def_n_proc"] = str(args.threads)  # nnU-Net sets torch's threads from it
    start, usage = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    labels = run_nnunet(args) if args.child == "nnunet" else run_segmentai(args)
    seconds = time.perf_counter() - start
    end = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (end.ru_utime - usage.ru_utime) + (end.ru_stime - usage.ru_stime)
    np.save(args.output, np.asarray(labels, dtype=np.uint8))
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "peak_rss_mib": peak_rss_mib()}))


def spawn(side: str, args, output: Path) -> dict:
    command = [sys.executable, __file__, "--child", side, "--model", str(args.model), "--package", str(args.package),
               "--case", str(args.case), "--threads", str(args.threads), "--output", str(output),
               "--folds", *[str(f) for f in args.folds]] + (["--mirror"] if args.mirror else [])
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{side} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def prepare(work: Path) -> tuple:
    """The trained model folder, its SegmentAI package and the 256×256×128 case (made once, cached)."""
    import nnunet_tiny

    model_root = work / "model"
    found = sorted(model_root.glob("nnUNet_results/*/*/fold_0/checkpoint_final.pth"))
    if not found:
        command = [sys.executable, str(ROOT / "Testing" / "Python" / "nnunet_tiny.py"), str(model_root),
                   *[str(v) for v in MODEL_SHAPE_KJI + MODEL_FEATURES]]
        subprocess.run(command, check=True, capture_output=True)
        found = sorted(model_root.glob("nnUNet_results/*/*/fold_0/checkpoint_final.pth"))
    model = found[0].parent.parent
    package = work / "package"
    if not package.exists():
        from segmentai_core.importers import convert_model

        convert_model(model, package)
    case = work / "case_256x256x128_0000.nii.gz"
    if not case.exists():
        image, _ = nnunet_tiny.phantom((128, 256, 256), seed=7, spacing_xyz=CASE_SPACING_XYZ)
        nnunet_tiny.write_nifti(image, case, spacing_xyz=CASE_SPACING_XYZ)
    return model, package, case


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, default=Path("/tmp/segmentai-bench-nnunet"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--folds", nargs="+", default=["0", "1"], help="must match the package's folds")
    parser.add_argument("--mirror", action="store_true", help="test-time mirroring on both sides (8× the work)")
    parser.add_argument("--out", type=Path, default=None, help="JSON report (its page: bench/nnunet_report.py)")
    parser.add_argument("--child", default=None)
    parser.add_argument("--model", default=None)
    parser.add_argument("--package", default=None)
    parser.add_argument("--case", default=None)
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    import nnunetv2
    from importlib.metadata import version

    from machine import describe

    args.work.mkdir(parents=True, exist_ok=True)
    args.model, args.package, args.case = prepare(args.work)
    runs = {side: [] for side in ("nnunet", "segmentai")}
    for _ in range(args.repeats):
        for side in runs:
            runs[side].append(spawn(side, args, args.work / f"{side}.npy"))
    best = {side: min(r, key=lambda x: x["seconds"]) for side, r in runs.items()}
    theirs, ours = np.load(args.work / "nnunet.npy"), np.load(args.work / "segmentai.npy")
    dice = {}
    for value in sorted(set(np.unique(theirs)) - {0}):
        a, b = theirs == value, ours == value
        dice[str(int(value))] = float(2 * np.logical_and(a, b).sum() / max(1, a.sum() + b.sum()))
    config = json.loads((Path(args.package) / "manifest.json").read_text(encoding="utf-8"))["x-nnunet"]
    report = {
        "machine": describe(), "threads": args.threads, "repeats": args.repeats, "folds": args.folds,
        "mirror": args.mirror, "nnunetv2": version("nnunetv2"), "patch_size": config["patch_size"],
        "runs": runs,
        "result": {
            "nnunet": best["nnunet"], "segmentai": best["segmentai"],
            "speedup": best["nnunet"]["seconds"] / best["segmentai"]["seconds"],
            "cpu_time_ratio": best["nnunet"]["cpu_seconds"] / best["segmentai"]["cpu_seconds"],
            "rss_ratio": best["segmentai"]["peak_rss_mib"] / best["nnunet"]["peak_rss_mib"],
            "dice": dice, "voxels_differing": int((theirs != ours).sum()), "voxels": int(theirs.size),
        },
    }
    report["machine"]["torch_threads"] = args.threads
    del nnunetv2
    print(json.dumps(report["result"], indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
