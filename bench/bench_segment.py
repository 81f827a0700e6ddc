"""Segment time per stage and peak RSS: SegmentAI's engine vs MONAI's sliding_window_inference.

Both sides use the same network, weights and preprocessing (canonical resampling +
normalisation), in the same run. The baseline is the usual MONAI pipeline at its best settings:
sliding windows over the whole resampled volume (window = the model's patch, the manifest's
overlap, Gaussian blending, ``sw_batch_size`` 4 by default: MONAI's default of 1 is 2-3x slower
on 2 cores), probabilities resampled back to the input grid in full, arg-max, then MONAI's own
``KeepLargestConnectedComponent`` and ``FillHoles``. Each method runs in a fresh subprocess so
that peak RSS is its own. ``reference`` is SegmentAI's former pipeline (every class resampled at
full resolution, SciPy postprocessing), run to check that today's output is the same voxels.
``--many-classes N`` also times restore + postprocess of an N-class output (a soft partition of the
head into N structures, see ``bench_segment_classes.py``) on the last size.

    python bench/bench_segment.py --sizes 256x256x128 512x512x300 --many-classes 104 \
        --out docs/benchmarks/segment.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "SegmentAI"))
sys.path.insert(0, str(ROOT / "bench"))


def make_volume(size_ijk, path: Path):
    """The bundled sample head resampled onto a grid of ``size_ijk`` covering the same field of view."""
    import SimpleITK as sitk

    from segmentai_core.geometry import Geometry
    from segmentai_core.inference.canonical import resample_to
    from segmentai_core.io import read_volume
    from segmentai_core.resources import resources_dir

    sample = read_volume(resources_dir() / "SampleData" / "sample_t1.nii.gz")
    g = sample.geometry
    extent = (np.array(g.size_ijk) - 1) * np.array(g.spacing)
    spacing = extent / (np.array(size_ijk) - 1)
    target = Geometry.create(tuple(reversed(size_ijk)), spacing, g.origin, g.direction_matrix)
    volume = resample_to(sample, target, order=1)
    volume.array = np.round(volume.array).astype(np.int16)
    sitk.WriteImage(volume.to_sitk(), str(path))


def run_segmentai(path: str, threads: int, device: str, suffix: str = ".segmentai.nii.gz") -> dict:
    import torch

    from segmentai_core.inference.engine import Segmenter
    from segmentai_core.io import read_volume, write_labelmap
    from segmentai_core.models.registry import ModelRegistry

    torch.set_num_threads(threads)
    t = time.perf_counter()
    volume = read_volume(path)
    read_s = time.perf_counter() - t
    segmenter = Segmenter(ModelRegistry().default(), device=device)
    t = time.perf_counter()
    result = segmenter.segment(volume)
    total = time.perf_counter() - t
    t = time.perf_counter()
    write_labelmap(result.labelmap, path + suffix, overwrite=True)
    write_s = time.perf_counter() - t
    # The same volume again in the same process: the network's first call in a process also pays
    # for oneDNN's kernel set-up, so the ratio to the network is reported for both calls.
    t = time.perf_counter()
    again = segmenter.segment(volume)
    warm = {"segment_s": time.perf_counter() - t, "stages_s": again.timings}
    return {"read_s": read_s, "segment_s": total, "write_s": write_s, "stages_s": result.timings, "second_call": warm}


def run_reference(path: str, threads: int, device: str) -> dict:
    """SegmentAI's former restore (every class, full resolution) and SciPy postprocessing."""
    from segmentai_core.inference import engine, postprocess, restore
    from segmentai_core.models.registry import ModelRegistry

    def former_restore(probabilities, canonical, original, values, progress):
        labels = restore.probabilities_to_labels_reference(probabilities, canonical, original, values, progress)
        return labels, tuple(slice(0, n) for n in labels.shape)  # the whole grid: postprocess scans it all

    # Every step ran at full resolution (now holes are filled on the model's grid, before the
    # restore); the flag is read here, once, not in the timed postprocessing.
    slice_holes = ModelRegistry().default().manifest.fill_slice_holes

    def former_clean(labels, values, *, largest, holes, within=None):
        return postprocess.clean_labels(labels, values, largest=largest, holes=holes, within=within,
                                        slice_holes=slice_holes)

    engine.restore_labels = former_restore
    engine.fill_holes_in_probabilities = lambda probabilities, **steps: 0
    engine.cleans_on_input_grid = lambda manifest: True
    engine.clean_labels = former_clean
    postprocess.cc3d = None  # SciPy, over the whole grid that former_restore reports as its box
    return run_segmentai(path, threads, device, suffix=".reference.nii.gz")


def run_monai(path: str, threads: int, device: str, sw_batch_size: int) -> dict:
    import torch
    from monai.inferers import sliding_window_inference

    from segmentai_core.inference.canonical import resample_channels_to
    from segmentai_core.inference.device import select_device
    from monai.transforms import FillHoles, KeepLargestConnectedComponent

    from segmentai_core.inference.preprocess import prepare_input
    from segmentai_core.io import read_volume, write_labelmap
    from segmentai_core.models.registry import ModelRegistry

    torch.set_num_threads(threads)
    package = ModelRegistry().default()
    manifest = package.manifest
    dev = select_device(device)
    volume = read_volume(path)
    stages = {}
    t0 = t = time.perf_counter()
    network = package.load_network(dev)
    stages["load_model"] = time.perf_counter() - t
    t = time.perf_counter()
    prepared = prepare_input(volume, manifest.preprocessing)
    stages["preprocess"] = time.perf_counter() - t
    t = time.perf_counter()
    with torch.inference_mode():
        logits = sliding_window_inference(
            torch.from_numpy(prepared.array)[None, None].to(dev), roi_size=tuple(reversed(manifest.patch_size)),
            sw_batch_size=sw_batch_size, predictor=network, overlap=manifest.overlap, mode="gaussian")
        probabilities = torch.softmax(logits.float(), 1)[0].cpu().numpy()
    stages["network"] = time.perf_counter() - t
    t = time.perf_counter()
    full = resample_channels_to(probabilities, prepared.canonical, volume.geometry,
                                [1.0] + [0.0] * (len(probabilities) - 1))
    labels = np.array([0] + manifest.label_values, dtype=np.uint8)[np.argmax(full, axis=0)]
    stages["restore"] = time.perf_counter() - t
    t = time.perf_counter()
    # MONAI's own postprocessing transforms, as a MONAI user applies them (channel-first label map).
    labels_t = torch.from_numpy(labels[None])
    labels_t = KeepLargestConnectedComponent(applied_labels=manifest.label_values, independent=True,
                                             connectivity=3)(labels_t)
    labels_t = FillHoles(applied_labels=manifest.label_values)(labels_t)
    labels = np.asarray(labels_t[0], dtype=np.uint8)
    stages["postprocess"] = time.perf_counter() - t
    total = time.perf_counter() - t0
    write_labelmap(volume.with_array(labels), path + ".monai.nii.gz", overwrite=True)
    return {"segment_s": total, "stages_s": stages}


def child(args) -> None:
    # Import the libraries both sides share before any clock starts, and note the RSS they cost:
    # the memory figures compare the work, not the Python runtime.
    import monai.inferers  # noqa: F401
    import SimpleITK  # noqa: F401
    import torch  # noqa: F401

    from segmentai_core.inference import engine, windows  # noqa: F401

    from machine import peak_rss_mib

    runtime_mib = peak_rss_mib()
    # Every method runs with numpy's huge-page advice as SegmentAI's Segmenter sets it (off where the
    # kernel compacts on fault), so the peer pays no page-fault stalls that SegmentAI is spared.
    from segmentai_core.inference.hugepages import avoid_hugepage_stalls

    hugepage_advice_off = avoid_hugepage_stalls()
    if args.method == "segmentai":
        result = run_segmentai(args.path, args.threads, args.device)
    elif args.method == "reference":
        result = run_reference(args.path, args.threads, args.device)
    elif args.method == "many_classes":
        from bench_segment_classes import run_many_classes

        result = run_many_classes(args.path, args.threads, args.many_classes)
    else:
        result = run_monai(args.path, args.threads, args.device, args.sw_batch_size)
    result["numpy_hugepage_advice_off"] = hugepage_advice_off
    result["peak_rss_mib"] = peak_rss_mib()
    result["runtime_rss_mib"] = runtime_mib
    result["work_rss_mib"] = result["peak_rss_mib"] - runtime_mib
    print(json.dumps(result))


def cold_cli(path: Path, threads: int) -> dict:
    """``segmentai segment`` as a user runs it: a new process, nothing imported beforehand.

    The wall time includes Python's start-up and every import (the other children import torch,
    SimpleITK and MONAI before their clocks start), so this is what a first segmentation costs.
    """
    import os

    out = path.with_name(path.name + ".cli.nii.gz")
    cmd = [sys.executable, "-c", "from segmentai_core.cli.main import main; main()", "segment", str(path),
           "-o", str(out), "--overwrite", "--timings", "--device", "cpu"]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=str(ROOT / "SegmentAI"))
    t = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    wall = time.perf_counter() - t
    timings = next(json.loads(line)["timings_s"] for line in done.stdout.splitlines() if '"timings_s"' in line)
    return {"wall_s": wall, "timings_s": timings}


def spawn(method: str, path: Path, args) -> dict:
    cmd = [sys.executable, __file__, "--child", method, "--path", str(path), "--threads", str(args.threads),
           "--device", args.device, "--sw-batch-size", str(args.sw_batch_size),
           "--many-classes", str(args.many_classes)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", nargs="+", default=["256x256x128", "512x512x300"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sw-batch-size", type=int, default=4)
    parser.add_argument("--many-classes", type=int, default=0, metavar="N",
                        help="also time restore + postprocess of an N-class output on the last size")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path("/tmp/segmentai-bench"))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--child", default=None)
    parser.add_argument("--path", default=None)
    args = parser.parse_args()
    if args.child:
        args.method = args.child
        child(args)
        return

    import SimpleITK as sitk

    from machine import describe
    from segmentai_core.metrics import dice
    from segmentai_core.models.registry import ModelRegistry

    args.work.mkdir(parents=True, exist_ok=True)
    import os

    report = {"machine": describe(), "load_average_at_start": os.getloadavg(), "threads": args.threads,
              "device": args.device,
              "sw_batch_size": args.sw_batch_size, "cases": []}
    report["machine"]["torch_threads"] = args.threads
    for size in args.sizes:
        size_ijk = tuple(int(v) for v in size.split("x"))
        path = args.work / f"head_{size}.nii.gz"
        if not path.exists():
            make_volume(size_ijk, path)
        runs = {m: [spawn(m, path, args) for _ in range(args.repeats)] for m in ("segmentai", "monai")}
        best = {m: min(r, key=lambda x: x["segment_s"]) for m, r in runs.items()}
        best["reference"] = spawn("reference", path, args)
        cli = [cold_cli(path, args.threads) for _ in range(args.repeats)]
        ours = sitk.GetArrayFromImage(sitk.ReadImage(str(path) + ".segmentai.nii.gz"))
        theirs = sitk.GetArrayFromImage(sitk.ReadImage(str(path) + ".monai.nii.gz"))
        former = sitk.GetArrayFromImage(sitk.ReadImage(str(path) + ".reference.nii.gz"))
        stages = best["segmentai"]["stages_s"]
        input_mib = float(np.prod(size_ijk)) * 4 / 1024**2
        case = {
            "size": size, "float32_input_mib": input_mib,
            "segmentai": best["segmentai"], "monai_sliding_window": best["monai"],
            "speed_ratio_total": best["monai"]["segment_s"] / best["segmentai"]["segment_s"],
            "speed_ratio_network": best["monai"]["stages_s"]["network"] / best["segmentai"]["stages_s"]["network"],
            "dice_parity": dice(ours, theirs),
            "voxels_differing": int((ours != theirs).sum()),
            "former_pipeline": best["reference"],
            "voxels_differing_from_former_pipeline": int((ours != former).sum()),
            "dice_vs_former_pipeline": dice(ours, former),
            "total_excluding_io_over_network": best["segmentai"]["segment_s"] / stages["network"],
            "total_excluding_io_and_model_load_over_network":
                (best["segmentai"]["segment_s"] - stages["load_model"]) / stages["network"],
            "second_call_total_over_network": best["segmentai"]["second_call"]["segment_s"]
                / best["segmentai"]["second_call"]["stages_s"]["network"],
            # The network's own time varies by half from run to run on a shared 2-core machine; the
            # ratio of the fastest run alone could flatter or hurt, so every run's is kept.
            "total_over_network_per_run": [r["segment_s"] / r["stages_s"]["network"] for r in runs["segmentai"]],
            "second_call_total_over_network_per_run": [
                r["second_call"]["segment_s"] / r["second_call"]["stages_s"]["network"] for r in runs["segmentai"]],
            # A user's first segmentation: a new ``segmentai segment`` process, read to write.
            "cold_cli_runs": cli,
            "cold_cli_wall_s_median": float(np.median([r["wall_s"] for r in cli])),
            "model_mib": sum(f.stat().st_size
                             for f in ModelRegistry().default().folder.glob("*.safetensors")) / 1024**2,
            "segmentai_work_rss_over_input": best["segmentai"]["work_rss_mib"] / input_mib,
            "monai_work_rss_over_input": best["monai"]["work_rss_mib"] / input_mib,
        }
        report["cases"].append(case)
        print(json.dumps(case, indent=1), flush=True)
        if args.many_classes and size == args.sizes[-1]:
            report["many_classes"] = spawn("many_classes", path, args)
            report["many_classes"]["float32_input_mib"] = input_mib
            print(json.dumps(report["many_classes"], indent=1), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
