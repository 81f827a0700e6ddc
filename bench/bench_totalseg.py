"""TotalSegmentator's own ``total --fast`` against SegmentAI's catalog model ``total_fast`` on the same weights.

Two models, each placed where TotalSegmentator 2.18 looks for the weights of ``total --fast``
(``Dataset297_..._3mm``) and installed into SegmentAI from the same folder zipped as the release
archive (``segmentai models install total_fast --from-file``):

- ``tiny``: the 2-class nnU-Net model trained here by ``nnunetv2`` (as the parity test uses): the
  cost of everything around the network (imports, reorder and resampling, 117 output files).
- ``release-size``: a network of the release's size with random weights (timing only; no accuracy
  claim): nnU-Net PlainConvUNet, 5 stages of 32–320 features, patch 112×112×128, 118 outputs, as the
  3 mm release's plans describe it (the plans are reconstructed, since the weights cannot be downloaded
  here: see ``RELEASE_ARCH``).

Cases are CT-like phantoms (body, lungs, spine, organs; int16 HU) stored as NIfTI in DICOM's LPS
order (TotalSegmentator reorders them to RAS): 256×256×128 at 1.5×1.5×2.5 mm and a full CT,
512×512×300 at 0.78×0.78×1.5 mm. Each tool runs in a fresh subprocess per repeat, as its users run
it: TotalSegmentator with its defaults (one file per class, six saving processes) and with ``--ml``
(one multi-label file, the closer match to SegmentAI's one ``.seg.nrrd``); SegmentAI with its
defaults, and with ``--precision bfloat16`` where the CPU runs it natively. Reported per case: the
call's wall time, the whole process's (imports included), peak RSS of the process and of its largest
child, SegmentAI's stages, and the label maps' agreement.

    python bench/bench_totalseg.py --out docs/benchmarks/totalseg.json
    python bench/totalseg_report.py docs/benchmarks/totalseg.json

Needs ``nnunetv2`` (a test dependency) and TotalSegmentator in ``.venv/totalseg-site``
(``scripts/test.sh`` installs it).
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "SegmentAI"), str(ROOT / "Testing" / "Python"), str(Path(__file__).parent)]

import totalseg_release as tr  # noqa: E402

# The 3 mm release's network (nnU-Net's default planner for an isotropic 3 mm CT dataset: 5 stages,
# 3×3×3 kernels, 2 convolutions per stage); patch in nnU-Net's axis order (z, y, x) as the release's
# plans state it (1 × 112 × 112 × 128 input windows).
RELEASE_ARCH = {"features_per_stage": [32, 64, 128, 256, 320], "patch_size": [112, 112, 128],
                "spacing": [3.0, 3.0, 3.0]}
CASES = {
    "ct-256x256x128": {"shape_kji": (128, 256, 256), "spacing_xyz": (1.5, 1.5, 2.5)},
    "ct-512x512x300": {"shape_kji": (300, 512, 512), "spacing_xyz": (0.78125, 0.78125, 1.5)},
}
TOOLS = ("segmentai", "segmentai-bfloat16", "totalseg-default", "totalseg-ml")
# The tiny model's plans are at 3.5 × 1 × 1 mm: on the full CT its windows would number thousands.
TINY_CASES = ("ct-256x256x128",)


def ct_phantom(shape_kji, spacing_xyz, seed: int = 3) -> np.ndarray:
    """An int16 CT-like volume: air, an elliptic body of soft tissue and fat, two lungs in the upper
    half, a spine, a bright organ and a dark one, noise. Built slice by slice (a 512² × 300 volume
    without full-size float temporaries)."""
    rng = np.random.default_rng(seed)
    nk, nj, ni = shape_kji
    sx, sy, sz = spacing_xyz
    x = (np.arange(ni) - ni / 2) * sx
    y = (np.arange(nj) - nj / 2) * sy
    xx, yy = np.meshgrid(x, y, indexing="xy")  # (j, i)
    half_x, half_y = 0.42 * ni * sx, 0.3 * nj * sy
    body = (xx / half_x) ** 2 + (yy / half_y) ** 2 < 1
    fat = body & ((xx / half_x) ** 2 + (yy / half_y) ** 2 > 0.8)
    lung_l = ((xx - 0.45 * half_x) / (0.35 * half_x)) ** 2 + ((yy + 0.1 * half_y) / (0.6 * half_y)) ** 2 < 1
    lung_r = ((xx + 0.45 * half_x) / (0.35 * half_x)) ** 2 + ((yy + 0.1 * half_y) / (0.6 * half_y)) ** 2 < 1
    spine = (xx / 18.0) ** 2 + ((yy - 0.7 * half_y) / 18.0) ** 2 < 1
    out = np.empty(shape_kji, dtype=np.int16)
    for k in range(nk):
        z = (k - nk / 2) * sz
        slab = np.full((nj, ni), -1000.0, dtype=np.float32)
        slab[body] = 40.0
        slab[fat] = -100.0
        if z > 0:
            slab[(lung_l | lung_r) & body] = -850.0
        else:
            organ = ((xx + 0.35 * half_x) / 60.0) ** 2 + ((yy + 0.1 * half_y) / 50.0) ** 2 + (z / 80.0 + 0.6) ** 2 < 1
            slab[organ & body] = 120.0
            kidney = ((xx - 0.4 * half_x) / 25.0) ** 2 + ((yy - 0.4 * half_y) / 30.0) ** 2 + (z / 40.0 + 1.2) ** 2 < 1
            slab[kidney & body] = 180.0
        slab[spine] = 600.0
        slab += rng.normal(0.0, 15.0, slab.shape).astype(np.float32)
        out[k] = np.clip(slab, -1024, 3071).astype(np.int16)
    return out


def write_case(path: Path, shape_kji, spacing_xyz) -> Path:
    import SimpleITK as sitk

    if path.exists():
        return path
    itk = sitk.GetImageFromArray(ct_phantom(shape_kji, spacing_xyz))
    itk.SetSpacing(tuple(float(s) for s in spacing_xyz))
    itk.SetOrigin((-0.5 * shape_kji[2] * spacing_xyz[0], -0.5 * shape_kji[1] * spacing_xyz[1], -300.0))
    sitk.WriteImage(itk, str(path), True)  # LPS identity direction, as a DICOM axial series converts
    return path


def tiny_model(work: Path) -> Path:
    """The tiny model folder (trained once by nnunetv2 in a subprocess, then cached)."""
    found = sorted((work / "tiny-train").glob("nnUNet_results/*/*/fold_0/checkpoint_final.pth"))
    if not found:
        subprocess.run([sys.executable, str(ROOT / "Testing" / "Python" / "nnunet_tiny.py"), str(work / "tiny-train")],
                       check=True, capture_output=True)
        found = sorted((work / "tiny-train").glob("nnUNet_results/*/*/fold_0/checkpoint_final.pth"))
    return found[0].parent.parent


def release_size_model(template: Path, target_home: Path) -> Path:
    """A release-size ``total --fast`` folder in TotalSegmentator's layout under ``target_home``, made
    from the tiny model's plans (nnU-Net's own structure) with the release's network and random
    weights; TotalSegmentator's 117 class names. Returns the trainer folder."""
    import torch
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from totalsegmentator.map_to_binary import class_map

    folder = target_home / "nnunet" / "results" / tr.TS_TASK_FOLDER / tr.TS_TRAINER_FOLDER
    (folder / "fold_0").mkdir(parents=True)
    plans = json.loads((template / "plans.json").read_text(encoding="utf-8"))
    plans["dataset_name"] = tr.TS_TASK_FOLDER.replace("_1559subj", "")
    plans["transpose_forward"], plans["transpose_backward"] = [0, 1, 2], [0, 1, 2]
    plans["original_median_spacing_after_transp"] = RELEASE_ARCH["spacing"]
    plans["foreground_intensity_properties_per_channel"] = {"0": {
        "max": 3071.0, "mean": 120.0, "median": 60.0, "min": -1024.0, "percentile_00_5": -958.0,
        "percentile_99_5": 1386.0, "std": 300.0}}
    config = plans["configurations"]["3d_fullres"]
    config["patch_size"] = RELEASE_ARCH["patch_size"]
    config["spacing"] = RELEASE_ARCH["spacing"]
    arch = config["architecture"]["arch_kwargs"]
    stages = len(RELEASE_ARCH["features_per_stage"])
    arch.update({"n_stages": stages, "features_per_stage": RELEASE_ARCH["features_per_stage"],
                 "kernel_sizes": [[3, 3, 3]] * stages, "strides": [[1, 1, 1]] + [[2, 2, 2]] * (stages - 1),
                 "n_conv_per_stage": [2] * stages, "n_conv_per_stage_decoder": [2] * (stages - 1)})
    for name in list(plans["configurations"]):
        if name != "3d_fullres":
            del plans["configurations"][name]
    (folder / "plans.json").write_text(json.dumps(plans, indent=2))
    names = class_map["total"]
    dataset = {"channel_names": {"0": "CT"}, "labels": {"background": 0, **{names[v]: v for v in sorted(names)}},
               "numTraining": 1559, "file_ending": ".nii.gz"}
    (folder / "dataset.json").write_text(json.dumps(dataset, indent=2))
    torch.manual_seed(0)
    network = get_network_from_plans(config["architecture"]["network_class_name"], copy.deepcopy(arch),
                                     config["architecture"]["_kw_requires_import"], 1, len(names) + 1,
                                     allow_init=True, deep_supervision=True)
    checkpoint = {"network_weights": network.state_dict(), "trainer_name": tr.TS_TRAINER,
                  "inference_allowed_mirroring_axes": None, "current_epoch": 4000,
                  "init_args": {"plans": plans, "configuration": "3d_fullres", "fold": 0, "dataset_json": dataset}}
    torch.save(checkpoint, folder / "fold_0" / "checkpoint_final.pth")
    tr.write_offline_config(target_home, "totalseg_segmentai_bench")
    return folder


def install(home: Path, segmentai_home: Path, archive: Path) -> Dict[str, str]:
    """SegmentAI installs the archive as its catalog model; returns the tools' environment."""
    env = tr.tool_env(home, segmentai_home)
    if not any((segmentai_home / "models").glob("total_fast-*/manifest.json")):
        done = subprocess.run([sys.executable, "-m", "segmentai_core.cli.main", "models", "install", "total_fast",
                               "--from-file", str(archive)], env=env, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise SystemExit(f"install failed: {done.stderr}")
    return env


def agreements(ours: List[Path], theirs_dir: Path, theirs_ml: Path, class_names: Dict[int, str]) -> List[Dict]:
    """For each of SegmentAI's label maps ``ours``: Dice against TotalSegmentator's (per-class files and
    ``--ml`` file) over the classes either finds. TotalSegmentator's outputs are read once, one class at
    a time (117 full-size masks do not fit)."""
    import SimpleITK as sitk

    from segmentai_core.io import read_segmentation

    maps = []
    for path in ours:
        labelmap, labels = read_segmentation(path)[:2]
        maps.append((labelmap.array, {label.name: label.value for label in labels}))
    ml = sitk.GetArrayFromImage(sitk.ReadImage(str(theirs_ml)))
    results = []
    for our, by_name in maps:
        to_ours = np.zeros(max(int(ml.max()), max(class_names)) + 1, dtype=our.dtype)  # their value → ours
        for value, name in class_names.items():
            to_ours[value] = by_name.get(name, 0)
        results.append({"dice_files": [], "dice_ml": [], "voxels_differing": int(np.count_nonzero(to_ours[ml] != our))})
    for value, name in sorted(class_names.items()):
        path = theirs_dir / f"{name}.nii.gz"
        theirs = sitk.GetArrayFromImage(sitk.ReadImage(str(path))) > 0 if path.exists() else np.zeros(ml.shape, bool)
        theirs_ml_class = ml == value
        for (our, by_name), result in zip(maps, results):
            mine = our == by_name[name] if name in by_name else np.zeros(our.shape, bool)
            if mine.any() or theirs.any():
                result["dice_files"].append(tr.dice(mine, theirs))
            if mine.any() or theirs_ml_class.any():
                result["dice_ml"].append(tr.dice(mine, theirs_ml_class))
    return [{"classes_compared": len(r["dice_files"]), "min_dice_vs_files": min(r["dice_files"], default=1.0),
             "min_dice_vs_ml": min(r["dice_ml"], default=1.0), "voxels_differing_vs_ml": r["voxels_differing"],
             "voxels": int(ml.size)} for r in results]


def unique_parameters(weights: Dict) -> int:
    """Parameters of a state dict, each stored tensor once (nnU-Net's decoder holds the encoder, so its
    state dict names the encoder's weights twice)."""
    seen, total = set(), 0
    for tensor in weights.values():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tensor.numel())
        if key not in seen:
            seen.add(key)
            total += tensor.numel()
    return total


def run_case(model: str, case: str, image: Path, env: Dict[str, str], work: Path, repeats: int,
             class_names: Dict[int, str]) -> Dict:
    from segmentai_core.inference.precision import bfloat16_supported

    outputs = {"segmentai": work / f"{model}-{case}.seg.nrrd",
               "segmentai-bfloat16": work / f"{model}-{case}-bf16.seg.nrrd",
               "totalseg-default": work / f"{model}-{case}-files", "totalseg-ml": work / f"{model}-{case}-ml.nii.gz"}
    tools = [t for t in TOOLS if t != "segmentai-bfloat16" or bfloat16_supported()]
    runs: Dict[str, List[Dict]] = {tool: [] for tool in tools}
    for _ in range(repeats):
        for tool in tools:
            target = outputs[tool]
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)
            runs[tool].append(tr.run_tool(tool, image, target, env, timeout_s=3600))
            print(f"  {model} {case} {tool}: {runs[tool][-1]['run_s']:.1f} s", file=sys.stderr, flush=True)
    best = {tool: min(r, key=lambda x: x["run_s"]) for tool, r in runs.items()}
    ours = best["segmentai"]
    result = {"runs": runs, "best": best,
              "speedup_vs_default": best["totalseg-default"]["run_s"] / ours["run_s"],
              "speedup_vs_ml": best["totalseg-ml"]["run_s"] / ours["run_s"],
              "process_speedup_vs_ml": best["totalseg-ml"]["process_s"] / ours["process_s"],
              "rss_ratio_vs_ml": ours["peak_rss_mib"] / max(best["totalseg-ml"]["peak_rss_mib"],
                                                           best["totalseg-ml"]["children_peak_rss_mib"])}
    ours_tools = [tool for tool in ("segmentai", "segmentai-bfloat16") if tool in best]
    found = agreements([outputs[tool] for tool in ours_tools], outputs["totalseg-default"], outputs["totalseg-ml"],
                       class_names)
    result["agreement"] = found[0]
    if "segmentai-bfloat16" in best:
        fast = best["segmentai-bfloat16"]
        result["bfloat16"] = {"speedup_vs_ml": best["totalseg-ml"]["run_s"] / fast["run_s"],
                              "speedup_vs_float32": ours["run_s"] / fast["run_s"], "agreement": found[1]}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/segmentai-bench-totalseg"))
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--models", default="tiny,release-size")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--out", type=Path, default=None, help="JSON report (its page: bench/totalseg_report.py)")
    args = parser.parse_args()
    if tr.totalseg_site() is None:
        raise SystemExit("TotalSegmentator is not installed: scripts/test.sh puts it into .venv/totalseg-site")
    sys.path.insert(0, str(tr.totalseg_site()))
    from importlib.metadata import version

    from totalsegmentator.map_to_binary import class_map

    from machine import describe
    from segmentai_core.importers.checkpoint import load_checkpoint

    args.work.mkdir(parents=True, exist_ok=True)
    template = tiny_model(args.work)
    report = {"machine": describe(), "totalsegmentator": tr.TS_VERSION, "nnunetv2": version("nnunetv2"),
              "repeats": args.repeats, "release_arch": RELEASE_ARCH, "cases": {}, "models": {}}
    for model in args.models.split(","):
        home, segmentai_home = args.work / f"{model}-totalseg-home", args.work / f"{model}-segmentai-home"
        if not home.exists():
            if model == "tiny":
                tr.place_tiny_model(template, home)
            else:
                release_size_model(template, home)
        archive = args.work / f"{model}-{tr.TS_TASK_FOLDER}.zip"
        if not archive.exists():
            tr.release_zip(home, archive)
        env = install(home, segmentai_home, archive)
        checkpoint = next(home.rglob("checkpoint_final.pth"))
        weights = load_checkpoint(checkpoint)["network_weights"]
        names = class_map["total"] if model != "tiny" else {v: n for v, n in tr.CLASS_NAMES.items()}
        report["models"][model] = {"parameters": unique_parameters(weights),
                                   "checkpoint_mib": checkpoint.stat().st_size / 2**20, "cases": {}}
        for case in args.cases.split(","):
            if model == "tiny" and case not in TINY_CASES:
                continue
            image = write_case(args.work / f"{case}.nii.gz", **CASES[case])
            report["cases"][case] = {**CASES[case], "file_mib": image.stat().st_size / 2**20}
            started = time.perf_counter()
            report["models"][model]["cases"][case] = run_case(model, case, image, env, args.work, args.repeats, names)
            print(f"{model} {case}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
            if args.out:
                args.out.write_text(json.dumps(report, indent=1))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
    else:
        print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
