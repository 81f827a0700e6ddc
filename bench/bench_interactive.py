"""Interactive segmentation benchmark: simulated prompts on structures and volumes the model never saw.

The standard clicker (``segmentai_train.interactive.clicker``): each next click at the voxel
farthest from the boundary of the largest error region, positive where the object is missed,
negative where background was taken. Two protocols:

* ``clicks``: clicks from an empty mask, on every case;
* ``box``: a 2D box around the object's largest cross-section on its slice first, then clicks
  (lesions and atlas structures).

Reports Dice after each prompt, NoC@80/85/90 per structure and the latency of each interaction, for
SegmentAI's interactive session with the shipped model (``segmentai``; ``--compare-model`` adds a
second one as ``segmentai_compare``), the random-walker fallback (the same session without a model)
and Slicer's Grow-from-seeds (``vtkImageGrowCutSegment`` from slicer-core), which is run with its own
clicker sequence and, for the clicks protocol, with exactly SegmentAI's sequence
(``growcut_same_clicks``). Cases: ``bench/interactive_cases.py``; methods: ``bench/interactive_methods.py``.

    python bench/bench_interactive.py --out docs/benchmarks/interactive.json --png docs/benchmarks-interactive.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "SegmentAI"))
sys.path.insert(0, str(ROOT / "training"))
sys.path.insert(0, str(ROOT / "bench"))

from interactive_cases import (  # noqa: E402
    ATLAS_GROUP, HEAD_GROUP, LESION_GROUP, atlas_cases, head_case, largest_section_box, lesion_cases)
from interactive_methods import GrowCutMethod, SessionMethod  # noqa: E402

THRESHOLDS = (0.80, 0.85, 0.90)
GROUPS = {"unseen_structures": ATLAS_GROUP, "lesions": LESION_GROUP, "whole_brain": HEAD_GROUP}


def run_prompts(method, truth: np.ndarray, spacing_kji, clicks: int, box=None,
                given: Optional[List[Tuple[np.ndarray, bool]]] = None) -> Tuple[List[float], list]:
    """Dice after each prompt: an optional first box, then clicks from the clicker on the method's own
    errors (or the ``given`` sequence); ``clicks`` prompts in all."""
    from segmentai_core.metrics import dice
    from segmentai_train.interactive.clicker import next_click

    prediction = np.zeros(truth.shape, dtype=bool)
    curve, sequence = [], []
    if box is not None:
        prediction = method.box(*box)
        curve.append(dice(prediction, truth))
    while len(curve) < clicks:
        n = len(sequence)
        if given is not None and n >= len(given):
            break
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
    parser.add_argument("--compare-model", default=None, help="a second interactive model, run side by side")
    parser.add_argument("--flips", type=int, default=0,
                        help="also run the model with this many test-time flips (as segmentai_flips)")
    parser.add_argument("--zoom-variant", type=int, default=None,
                        help="also run the model with this many zoom-out passes (as segmentai_zoomN; default 2)")
    parser.add_argument("--clicks", type=int, default=10, help="prompts per case and protocol")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-fallback", action="store_true", help="skip the random-walker fallback")
    parser.add_argument("--no-growcut", action="store_true", help="skip Grow-from-seeds")
    parser.add_argument("--structures", type=int, default=None, help="only the first N atlas structures")
    parser.add_argument("--protocols", default="clicks,box", help="comma-separated: clicks, box")
    parser.add_argument("--out", type=Path, default=None, help="JSON results")
    parser.add_argument("--png", type=Path, default=None, help="Dice-per-prompt figure")
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
    worker = InteractionWorker(threads=args.threads)
    models = {"segmentai": ModelPredictor(package, device=args.device)}
    if args.compare_model:
        models["segmentai_compare"] = ModelPredictor(ModelRegistry().get(args.compare_model), device=args.device)
    if args.flips:
        models["segmentai_flips"] = ModelPredictor(package, device=args.device, flips=args.flips)
    for predictor in models.values():
        worker.call(predictor.load)
    cases = atlas_cases()[: args.structures] + lesion_cases() + head_case()
    protocols = [p.strip() for p in args.protocols.split(",") if p.strip()]
    results: Dict[str, Dict[str, Dict]] = {p: {} for p in protocols}
    latencies: Dict[str, List[float]] = {}
    for group, structure, image, truth in cases:
        spacing_kji = image.geometry.spacing[::-1]
        key = f"{group}/{structure}"
        for protocol in protocols:
            if protocol == "box" and group == HEAD_GROUP:
                continue  # nobody frames a whole brain with one rectangle on one slice
            box = largest_section_box(truth) if protocol == "box" else None
            entry: Dict[str, Dict] = {}
            methods: List[Tuple[str, Callable[[], object]]] = [
                (name, lambda p=predictor: SessionMethod(image, p, worker)) for name, predictor in models.items()]
            if args.zoom_variant is not None:
                methods.append((f"segmentai_zoom{args.zoom_variant}", lambda: SessionMethod(
                    image, models["segmentai"], worker, zoom_out_passes=args.zoom_variant)))
            if not args.no_fallback:
                methods.append(("random_walker", lambda: SessionMethod(image, RandomWalkerPredictor(), worker)))
            if not args.no_growcut:
                methods.append(("growcut", lambda: GrowCutMethod(image)))
            sequence = None
            for name, make in methods:
                method = make()
                curve, clicked = run_prompts(method, truth, spacing_kji, args.clicks, box)
                sequence = clicked if name == "segmentai" else sequence
                entry[name] = {"dice": curve}
                latencies.setdefault(name, []).extend(method.latencies)
            if protocol == "clicks" and not args.no_growcut:
                curve, _ = run_prompts(GrowCutMethod(image), truth, spacing_kji, args.clicks, None, given=sequence)
                entry["growcut_same_clicks"] = {"dice": curve}
            for values in entry.values():
                values["noc"] = {f"{int(t * 100)}": clicks_to_reach(values["dice"], t, args.clicks + 1)
                                 for t in THRESHOLDS}
            entry["voxels"] = int(truth.sum())
            results[protocol][key] = entry
            print(protocol, key, {n: [round(d, 3) for d in v["dice"][:3]] + [round(v["dice"][-1], 3)]
                                  for n, v in entry.items() if isinstance(v, dict)}, flush=True)
    summary = summarise(results, latencies)
    report = {"machine": describe(), "model": package.full_id,
              "compare_model": models["segmentai_compare"].name if args.compare_model else None,
              "device": args.device, "threads": args.threads, "prompts": args.clicks, "summary": summary,
              "per_structure": results}
    print(json.dumps(summary, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1))
    if args.png:
        plot(results, args.png)
    worker.close()


def summarise(results: Dict[str, Dict], latencies: Dict[str, List[float]]) -> Dict:
    """Per protocol and case group: mean Dice after each prompt and mean NoC per method; latency per method."""
    summary: Dict[str, Dict] = {}
    for protocol, cases in results.items():
        for group, prefix in GROUPS.items():
            keys = [k for k in cases if k.startswith(prefix + "/")]
            methods = sorted({m for k in keys for m, v in cases[k].items() if isinstance(v, dict)})
            for method in methods:
                curves = [cases[k][method]["dice"] for k in keys if method in cases[k]]
                length = min(len(c) for c in curves)
                summary.setdefault(protocol, {}).setdefault(group, {})[method] = {
                    "dice_per_prompt": [round(float(np.mean([c[n] for c in curves])), 4) for n in range(length)],
                    "noc": {t: round(float(np.mean([cases[k][method]["noc"][t] for k in keys if method in cases[k]])),
                                     2) for t in ("80", "85", "90")},
                    "cases": len(curves),
                }
    summary["latency_s"] = {}
    for method, values in latencies.items():
        if values:
            array = np.array(values)
            summary["latency_s"][method] = {"p50": round(float(np.percentile(array, 50)), 4),
                                            "p95": round(float(np.percentile(array, 95)), 4), "n": len(array)}
    return summary


def plot(results: Dict[str, Dict], path: Path) -> None:
    """Mean Dice per prompt: atlas structures and lesions with clicks, and with a box first."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(p, g) for p in ("clicks", "box") if p in results for g in ("unseen_structures", "lesions")]
    every = sorted({m for cases in results.values() for entry in cases.values() for m, v in entry.items()
                    if isinstance(v, dict)})
    colors = {m: plt.get_cmap("tab10")(n % 10) for n, m in enumerate(every)}  # one colour per method everywhere
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.8), squeeze=False)
    for ax, (protocol, group) in zip(axes[0], panels):
        cases = results[protocol]
        keys = [k for k in cases if k.startswith(GROUPS[group] + "/")]
        methods = sorted({m for k in keys for m, v in cases[k].items() if isinstance(v, dict)})
        for method in methods:
            curves = [cases[k][method]["dice"] for k in keys if method in cases[k]]
            length = min(len(c) for c in curves)
            ax.plot(range(1, length + 1), [np.mean([c[n] for c in curves]) for n in range(length)], marker="o",
                    markersize=3, label=method, color=colors[method])
        ax.set_title(f"{group.replace('_', ' ')}: {'box, then clicks' if protocol == 'box' else 'clicks'}",
                     fontsize=9)
        ax.set_xlabel("prompts")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("mean Dice")
    axes[0][0].legend(fontsize=7)  # the first panel has every method
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--replot":  # figure of an earlier run: --replot JSON PNG
        plot(json.loads(Path(sys.argv[2]).read_text())["per_structure"], Path(sys.argv[3]))
    else:
        main()
