"""Interactive segmentation benchmark: simulated prompts on real structures the model never saw.

Cases (``bench/interactive_cases.py``): 22 structures, CT and MRI, small and large, isotropic and
thick-slice, each cropped around the structure with a 10 mm margin. Two protocols:

* ``clicks``: clicks from an empty mask by the standard clicker (``segmentai_train.interactive.clicker
  .next_click``: the voxel farthest, in mm, from the boundary of the largest error region, positive
  where the object is missed); Dice after each click, NoC@80/85/90 (``clicks + 1`` when never reached);
* ``cvpr``: the CVPR 2025 interactive challenge's protocol (``CVPR25_iter_eval.py``): the object's
  3D bounding box (1 voxel margin) first, then 5 clicks (``cvpr_click``: largest 26-connected error
  component, its voxel of maximum distance transform); DSC AUC (trapezoid over the DSCs after clicks
  1..5, unit steps, at most 4), final DSC and final NSD at 2 mm after the 5th click.

Methods, each given the same information:

* ``segmentai``: the default engine (``default_predictor()``: the hybrid) told the ROI (the crop: the
  structure's box plus 10 mm; ``session.set_roi``), or the box in ``cvpr`` (as ROI and box prompt);
* ``segmentai_clicks_only``: the same engine without the ROI;
* ``unet``: the interactive model alone, as 1.2.0 shipped it (its flip, no ROI; a box as box prompt);
* ``growcut_roi``: Slicer's Grow-from-seeds (``vtkImageGrowCutSegment``) with the clicks as seeds and
  the ROI's border as background (in ``cvpr``: the box is the ROI, a seed at its centre);
* ``growcut_clicks``: Grow-from-seeds on the clicks only (``clicks`` protocol);
* ``random_walker``: the session's random-walker fallback, with the ROI (``--rw-clicks`` clicks).

    python bench/bench_interactive.py --out docs/benchmarks/interactive.json --png docs/benchmarks-interactive.png
    python bench/interactive_report.py docs/benchmarks/interactive.json   # the doc's tables
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "SegmentAI"))
sys.path.insert(0, str(ROOT / "training"))
sys.path.insert(0, str(ROOT / "bench"))

from interactive_cases import Case, all_cases, bounding_box_3d  # noqa: E402
from interactive_methods import GrowCutMethod, SessionMethod  # noqa: E402

THRESHOLDS = (0.80, 0.85, 0.90)
NSD_TOLERANCE_MM = 2.0


def nsd(prediction: np.ndarray, truth: np.ndarray, spacing_kji, tolerance_mm: float = NSD_TOLERANCE_MM) -> float:
    """Normalised surface distance (surface Dice): the share of both surfaces within ``tolerance_mm``
    of the other (surfaces: voxels of a mask with a face neighbour outside it)."""
    from scipy import ndimage

    if not prediction.any() or not truth.any():
        return float(prediction.any() == truth.any())

    def surface(mask):
        return mask & ~ndimage.binary_erosion(mask, border_value=0)

    a, b = surface(prediction), surface(truth)
    to_b = ndimage.distance_transform_edt(~b, sampling=spacing_kji)[a]
    to_a = ndimage.distance_transform_edt(~a, sampling=spacing_kji)[b]
    return float((np.count_nonzero(to_b <= tolerance_mm) + np.count_nonzero(to_a <= tolerance_mm))
                 / (to_b.size + to_a.size))


def run_clicks(method, case: Case, clicks: int) -> List[float]:
    from segmentai_core.metrics import dice
    from segmentai_train.interactive.clicker import next_click

    prediction = np.zeros(case.truth.shape, dtype=bool)
    curve: List[float] = []
    while len(curve) < clicks:
        click = next_click(prediction, case.truth, case.spacing_kji)
        if click is None:
            curve.append(1.0)
            continue
        prediction = method.click(*click)
        curve.append(dice(prediction, case.truth))
    return curve


def run_cvpr(method, case: Case, clicks: int = 5) -> Dict:
    from segmentai_core.metrics import dice
    from segmentai_train.interactive.clicker import cvpr_click

    prediction = method.box(*bounding_box_3d(case.truth))
    box_dice = dice(prediction, case.truth)
    curve: List[float] = []
    while len(curve) < clicks:
        click = cvpr_click(prediction, case.truth)
        if click is not None:
            prediction = method.click(*click)
        curve.append(dice(prediction, case.truth))
    return {"box_dice": box_dice, "dice": curve, "auc": float(np.trapezoid(curve)), "final_dsc": curve[-1],
            "final_nsd": nsd(prediction, case.truth, case.spacing_kji)}


def load_average() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="interactive model id (default: the installed one)")
    parser.add_argument("--clicks", type=int, default=10, help="clicks per case in the clicks protocol")
    parser.add_argument("--rw-clicks", type=int, default=5, help="clicks for the (slow) random walker")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sources", default=None,
                        help="comma-separated case sources (atlas, brain, lesion, ct, abdomen)")
    parser.add_argument("--only", default=None, help="only cases whose name contains one of these (comma-separated)")
    parser.add_argument("--methods", default=None, help="comma-separated subset of the methods")
    parser.add_argument("--protocols", default="clicks,cvpr")
    parser.add_argument("--out", type=Path, default=None, help="JSON results")
    parser.add_argument("--png", type=Path, default=None, help="Dice-per-prompt figure")
    args = parser.parse_args(argv)

    import torch

    from machine import describe
    from segmentai_core.interaction import InteractionWorker, ModelPredictor, RandomWalkerPredictor, default_predictor
    from segmentai_core.interaction.predictors import find_interactive_model
    from segmentai_core.models.registry import ModelRegistry
    from segmentai_train.interactive.clicker import clicks_to_reach

    torch.set_num_threads(args.threads)
    package = ModelRegistry().get(args.model) if args.model else find_interactive_model()
    if package is None:
        raise SystemExit("no interactive model installed; pass --model")
    worker = InteractionWorker(threads=args.threads)
    engine = default_predictor(device="cpu", package=package)
    unet = ModelPredictor(package, device="cpu")
    worker.call(engine.load)
    worker.call(unet.load)
    wanted = set(args.methods.split(",")) if args.methods else None
    cases = all_cases(args.sources.split(",") if args.sources else None)
    if args.only:
        cases = [c for c in cases if any(part in c.name for part in args.only.split(","))]
    protocols = [p.strip() for p in args.protocols.split(",") if p.strip()]
    results: Dict[str, Dict[str, Dict]] = {p: {} for p in protocols}
    latencies: Dict[str, Dict[str, List[float]]] = {}
    load_before = load_average()
    started = time.perf_counter()
    for case in cases:
        roi = case.roi
        makers: Dict[str, Callable[[], object]] = {
            "segmentai": lambda: SessionMethod(case.image, engine, worker, roi=roi),
            "segmentai_clicks_only": lambda: SessionMethod(case.image, engine, worker),
            "unet": lambda: SessionMethod(case.image, unet, worker, box_roi_margin_mm=None),  # as shipped in 1.2.0
            "growcut_roi": lambda: GrowCutMethod(case.image, roi),
            "growcut_clicks": lambda: GrowCutMethod(case.image, None),
            "random_walker": lambda: SessionMethod(case.image, RandomWalkerPredictor(), worker, roi=roi),
        }
        for protocol in protocols:
            entry: Dict[str, Dict] = {}
            for name, make in makers.items():
                if wanted is not None and name not in wanted:
                    continue
                if protocol == "cvpr" and name in ("segmentai_clicks_only", "growcut_clicks"):
                    continue  # with a box, both are told the box
                method = make()
                if protocol == "clicks":
                    count = args.rw_clicks if name == "random_walker" else args.clicks
                    curve = run_clicks(method, case, count)
                    entry[name] = {"dice": curve, "noc": {f"{int(t * 100)}": clicks_to_reach(curve, t, count + 1)
                                                          for t in THRESHOLDS}}
                else:
                    entry[name] = run_cvpr(method, case)
                latencies.setdefault(name, {}).setdefault(case.kind, []).extend(method.latencies)
            results[protocol][case.name] = entry
            print(protocol, case.name, {n: [round(d, 3) for d in v["dice"][:5]] for n, v in entry.items()}, flush=True)
    seconds = time.perf_counter() - started
    report = {"machine": describe(), "load_before": load_before, "load_after": load_average(),
              "seconds": round(seconds, 1), "model": package.full_id, "engine": engine.name,
              "threads": args.threads, "clicks": args.clicks, "rw_clicks": args.rw_clicks,
              "cases": [c.describe() for c in cases], "results": results,
              "summary": summarise(results, latencies)}
    print(json.dumps(report["summary"], indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1))
    if args.png:
        plot(results, args.png)
        plot_cases(results, args.png.with_name(args.png.stem + "-cases.png"))
    worker.close()


def summarise(results: Dict[str, Dict], latencies: Dict[str, Dict[str, List[float]]]) -> Dict:
    """Means over the cases per protocol and method; latency per method (all interactions, and per kind)."""
    summary: Dict[str, Dict] = {}
    for protocol, cases in results.items():
        methods = sorted({m for entry in cases.values() for m in entry})
        for method in methods:
            entries = [entry[method] for entry in cases.values() if method in entry]
            length = min(len(e["dice"]) for e in entries)
            values: Dict = {"cases": len(entries), "dice_per_prompt": [
                round(float(np.mean([e["dice"][n] for e in entries])), 4) for n in range(length)]}
            if protocol == "clicks":
                values["noc"] = {t: round(float(np.mean([e["noc"][t] for e in entries])), 2)
                                 for t in ("80", "85", "90")}
            else:
                for key in ("box_dice", "auc", "final_dsc", "final_nsd"):
                    values[key] = round(float(np.mean([e[key] for e in entries])), 4)
            summary.setdefault(protocol, {})[method] = values
    summary["latency_s"] = {}
    for method, kinds in latencies.items():
        every = np.array([v for values in kinds.values() for v in values])
        if every.size:
            summary["latency_s"][method] = {
                "p50": round(float(np.percentile(every, 50)), 4), "p95": round(float(np.percentile(every, 95)), 4),
                "n": int(every.size), "per_kind_p95": {k: round(float(np.percentile(v, 95)), 4)
                                                       for k, v in kinds.items() if v}}
    return summary


def plot(results: Dict[str, Dict], path: Path) -> None:
    """Mean Dice per prompt for each method: clicks from empty, and the CVPR protocol (box, 5 clicks)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    every = sorted({m for cases in results.values() for entry in cases.values() for m in entry})
    colors = {m: plt.get_cmap("tab10")(n % 10) for n, m in enumerate(every)}
    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 3.8), squeeze=False)
    for ax, (protocol, cases) in zip(axes[0], results.items()):
        methods = sorted({m for entry in cases.values() for m in entry})
        for method in methods:
            entries = [entry[method] for entry in cases.values() if method in entry]
            if protocol == "cvpr":
                curves = [[e["box_dice"]] + e["dice"] for e in entries]
                x0 = 0
            else:
                curves = [e["dice"] for e in entries]
                x0 = 1
            length = min(len(c) for c in curves)
            ax.plot(range(x0, x0 + length), [np.mean([c[n] for c in curves]) for n in range(length)], marker="o",
                    markersize=3, label=method, color=colors[method])
        ax.set_title(f"{len(cases)} cases: " + ("box, then 5 clicks (CVPR 2025)" if protocol == "cvpr"
                                                else "clicks from an empty mask"), fontsize=9)
        ax.set_xlabel("clicks (0 = the box)" if protocol == "cvpr" else "clicks")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("mean Dice")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_cases(results: Dict[str, Dict], path: Path) -> None:
    """Dice per click for every case (clicks from an empty mask), one small panel each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = results.get("clicks", {})
    shown = ("segmentai", "growcut_roi", "growcut_clicks", "unet", "random_walker")
    every = sorted({m for cases_ in results.values() for entry in cases_.values() for m in entry})
    colors = {m: plt.get_cmap("tab10")(n % 10) for n, m in enumerate(every)}
    columns = 6
    rows = (len(cases) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.2 * rows), squeeze=False, sharey=True)
    for ax, (name, entry) in zip(axes.ravel(), cases.items()):
        for method in shown:
            if method in entry:
                curve = entry[method]["dice"]
                ax.plot(range(1, len(curve) + 1), curve, marker="o", markersize=2, color=colors[method], label=method)
        ax.set_title(name.split("/")[-1].replace("Left ", "L "), fontsize=8)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[len(cases):]:
        ax.axis("off")
    axes[0][0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--replot":  # figures of an earlier run: --replot JSON PNG
        replotted = json.loads(Path(sys.argv[2]).read_text())["results"]
        plot(replotted, Path(sys.argv[3]))
        plot_cases(replotted, Path(sys.argv[3]).with_name(Path(sys.argv[3]).stem + "-cases.png"))
    else:
        main()
