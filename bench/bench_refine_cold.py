"""A cold ``segmentai refine``: one new process per interaction, on 128³ crops (the interactive issue's
"a cold refine on a 128³ crop in ≤ 3 s, model loading and start-up reported separately").

    python bench/bench_refine_cold.py --repeats 5 --out docs/benchmarks/refine-cold.json
    python bench/refine_cold_report.py docs/benchmarks/refine-cold.json

Crops (each resampled onto a 128³ grid that holds the structure's box plus 10 mm, at no finer than
its scan's spacing; fetched from the package index or Debian at run time, as the interactive bench's):
  * the bundled sample T1 (the ROBEX head, 1.5 mm) and its brain: a whole-brain-sized object, where
    the engine's network runs;
  * the InVesalius head CT (0.96×0.96×1.5 mm) and its head mask (−142 HU and above): in CT the
    engine's geodesic answer runs alone.
Prompts, each a new process: one click at the structure's deepest voxel; the same click with the ROI
(the box plus 10 mm); and a refinement of a previous mask (the structure eroded by 3 voxels) by one
click at the deepest voxel of what it misses. Every run is timed from outside (the process's wall)
and from inside (``--timings``: read, torch import, model load, interaction, write); what is left is
the interpreter's start and the imports before ``refine`` runs. The prompts of one repeat run in a
row, the crops alternate, and every run is reported.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "SegmentAI"))
sys.path.insert(0, str(ROOT / "bench"))

SIZE = 128
MARGIN_MM = 10.0


def _grid_around(image, mask: np.ndarray):
    """A 128³ axis-aligned grid (the image's own directions) holding ``mask``'s box plus the margin."""
    from segmentai_core.geometry import Geometry

    g = image.geometry
    box = np.argwhere(mask)
    lo, hi = box.min(axis=0)[::-1].astype(float), box.max(axis=0)[::-1].astype(float)  # i, j, k
    spacing = np.asarray(g.spacing, float)
    extent_mm = (hi - lo) * spacing + 2 * MARGIN_MM
    step = max(float(extent_mm.max()) / SIZE, float(spacing.max()))
    centre = g.ijk_to_lps(((lo + hi) / 2)[None])[0]
    direction = np.asarray(g.direction_matrix, float)
    origin = centre - direction @ np.full(3, (SIZE - 1) * step / 2)
    return Geometry.create((SIZE, SIZE, SIZE), (step,) * 3, tuple(origin), g.direction_matrix)


def _crop(image, mask: np.ndarray):
    from segmentai_core.inference.canonical import resample_to

    grid = _grid_around(image, mask)
    crop = resample_to(image, grid, order=1, default_value=float(image.array.min()))  # beyond the scan: air
    if np.issubdtype(image.array.dtype, np.integer):  # stored as the scan was (a float file reads slower)
        crop = crop.with_array(np.rint(crop.array).astype(image.array.dtype))
    truth = resample_to(image.with_array(mask.astype(np.uint8)), grid, order=0).array > 0
    return crop, truth


def _mri_brain():
    from segmentai_core.io import read_volume
    from segmentai_core.resources import resources_dir

    samples = resources_dir() / "SampleData"
    image = read_volume(samples / "sample_t1.nii.gz")
    mask = read_volume(samples / "sample_brain_mask.nii.gz").array > 0
    return _crop(image, mask)


def _ct_head():
    from interactive_cases import invesalius_ct

    image, masks = invesalius_ct()
    (head,) = [mask for low, mask in masks if low < 100]  # the head mask (−142 HU and above)
    return _crop(image, head)


CROPS = {"MRI T1 brain (sample head)": _mri_brain, "CT head (InVesalius)": _ct_head}


def _deepest(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    distance = ndimage.distance_transform_edt(mask)
    return np.array(np.unravel_index(int(np.argmax(distance)), mask.shape))[::-1]  # i, j, k


def _prompts(folder: Path, image, truth: np.ndarray) -> Dict[str, List[str]]:
    """Arguments of the three interactions on one crop (voxel indices)."""
    from scipy import ndimage

    from segmentai_core.io import write_labelmap, write_volume

    write_volume(image, folder / "image.nii.gz", overwrite=True)
    previous = ndimage.binary_erosion(truth, iterations=3)
    write_labelmap(image.with_array(previous.astype(np.uint8)), folder / "previous.nii.gz", overwrite=True)
    click = ",".join(str(int(v)) for v in _deepest(truth))
    missed = ",".join(str(int(v)) for v in _deepest(truth & ~previous))
    box = np.argwhere(truth)
    margin = MARGIN_MM / image.geometry.spacing[0]
    lo = np.clip(box.min(axis=0)[::-1] - margin, 0, SIZE - 1)
    hi = np.clip(box.max(axis=0)[::-1] + margin, 0, SIZE - 1)
    roi = ",".join(f"{v:.1f}" for v in (*lo, *hi))
    return {"one click": ["--fg", click],
            "ROI + click": ["--roi", roi, "--fg", click],
            "previous mask + click": ["--mask", str(folder / "previous.nii.gz"), "--fg", missed]}


def _run(folder: Path, arguments: List[str]) -> dict:
    output = folder / "out.nii.gz"
    command = [sys.executable, "-m", "segmentai_core.cli.main", "refine", str(folder / "image.nii.gz"), *arguments,
               "--ijk", "-o", str(output), "--overwrite", "--timings"]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"refine failed: {done.stderr.strip().splitlines()[-1:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    stages = report["timings_s"]
    return {"wall_s": wall, "stages_s": stages, "rest_s": wall - sum(stages.values()),
            "predictor": report["predictor"], "network": report["network"], "voxels": report["voxels"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=Path("/tmp/segmentai-refine-cold"))
    args = parser.parse_args()
    from machine import describe

    load_before = Path("/proc/loadavg").read_text().split()[:3]
    crops: Dict[str, Tuple[Path, Dict[str, List[str]], dict]] = {}
    for n, (name, build) in enumerate(CROPS.items()):
        folder = args.work / f"crop{n}"
        folder.mkdir(parents=True, exist_ok=True)
        image, truth = build()
        prompts = _prompts(folder, image, truth)
        crops[name] = (folder, prompts, {"shape_ijk": list(image.geometry.size_ijk),
                                         "spacing_mm": [round(s, 3) for s in image.geometry.spacing],
                                         "structure_voxels": int(truth.sum()), "prompts": prompts})
    runs: Dict[str, Dict[str, List[dict]]] = {name: {p: [] for p in prompts} for name, (_, prompts, _) in crops.items()}
    for repeat in range(args.repeats):
        for name, (folder, prompts, _) in crops.items():
            for prompt, arguments in prompts.items():
                result = _run(folder, arguments)
                runs[name][prompt].append(result)
                print(f"[{repeat + 1}/{args.repeats}] {name}, {prompt}: {result['wall_s']:.2f} s", flush=True)
    walls = [r["wall_s"] for crop in runs.values() for prompt in crop.values() for r in prompt]
    report = {"machine": describe(), "repeats": args.repeats, "load_average_before": load_before,
              "load_average_after": Path("/proc/loadavg").read_text().split()[:3],
              "date": time.strftime("%Y-%m-%d %H:%M"),
              "crops": {name: {**info, "runs": runs[name]} for name, (_, _, info) in crops.items()},
              "wall_s_median": statistics.median(walls), "wall_s_max": max(walls)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}: median {report['wall_s_median']:.2f} s, slowest {report['wall_s_max']:.2f} s")


if __name__ == "__main__":
    main()
