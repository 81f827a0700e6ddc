"""Markdown tables of ``docs/benchmarks/segment.json`` (written by ``bench_segment.py``).

    python bench/segment_report.py docs/benchmarks/segment.json > /tmp/segment.md

The tables in ``docs/benchmarks.md`` are pasted from this output, never typed by hand.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

STAGES = ("load_model", "preprocess", "network", "restore", "postprocess")


def _segment_s(timings: dict) -> float:
    """A CLI run's segmentation: every stage but reading and writing the files."""
    return sum(v for k, v in timings.items() if k not in ("read", "write"))


def _s(value: float) -> str:
    return f"{value:.2f}"


def render(report: dict) -> str:
    machine = report["machine"]
    load = report.get("load_average_at_start")
    lines = [
        f"**Machine.** {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB RAM, "
        f"GPU: {machine.get('gpu') or 'none'}; Python {machine['python']}, torch {machine['torch']} with "
        f"{report['threads']} threads, MONAI {machine['monai']}, SimpleITK {machine['SimpleITK']}."
        + (f" Load average at the start: {', '.join(f'{v:.1f}' for v in load)} (1, 5, 15 min)." if load else ""),
        f"MONAI's `sw_batch_size`: {report['sw_batch_size']}.",
        "",
        "| input | SegmentAI total (s) | MONAI total (s) | speed-up | SegmentAI total ÷ its network | "
        "voxels differing from MONAI | voxels differing from SegmentAI's former pipeline | "
        "work memory SegmentAI / MONAI (MiB) | read / write (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for case in report["cases"]:
        ours, theirs = case["segmentai"], case["monai_sliding_window"]
        lines.append(
            f"| {case['size']} | {_s(ours['segment_s'])} | {_s(theirs['segment_s'])} | "
            f"{case['speed_ratio_total']:.2f}× | {case['total_excluding_io_over_network']:.2f} "
            f"({case['total_excluding_io_and_model_load_over_network']:.2f} without model loading) | "
            f"{case['voxels_differing']:,} | {case['voxels_differing_from_former_pipeline']:,} | "
            f"{ours['work_rss_mib']:.0f} / {theirs['work_rss_mib']:.0f} | "
            f"{_s(ours.get('read_s', 0))} / {_s(ours.get('write_s', 0))} |")
    cold = [case for case in report["cases"] if case.get("cold_cli_runs")]
    if cold:
        lines += ["", "#### A first segmentation: `segmentai segment` in a new process", "",
                  "| input | wall, median (s) | walls of the runs (s) | read / segment / write in the median run (s) "
                  "| segment ÷ its network, each run |",
                  "|---|---:|---|---:|---|"]
        for case in cold:
            runs = sorted(case["cold_cli_runs"], key=lambda r: r["wall_s"])
            middle = runs[(len(runs) - 1) // 2]["timings_s"]
            ratios = ", ".join(f"{_segment_s(r['timings_s']) / r['timings_s']['network']:.2f}"
                               for r in case["cold_cli_runs"])
            lines.append(f"| {case['size']} | {_s(case['cold_cli_wall_s_median'])} | "
                         f"{', '.join(_s(r['wall_s']) for r in case['cold_cli_runs'])} | "
                         f"{_s(middle['read'])} / {_s(_segment_s(middle))} / {_s(middle['write'])} | {ratios} |")
    for case in report["cases"]:
        ours, theirs = case["segmentai"], case["monai_sliding_window"]
        former = case.get("former_pipeline", {}).get("stages_s", {})
        lines += ["", f"#### {case['size']} per stage", "",
                  "| stage | SegmentAI (s) | SegmentAI former pipeline (s) | MONAI pipeline (s) |",
                  "|---|---:|---:|---:|"]
        for stage in STAGES:
            lines.append(f"| {stage} | {_s(ours['stages_s'][stage])} | "
                         f"{_s(former[stage]) if stage in former else '–'} | {_s(theirs['stages_s'][stage])} |")
        lines.append(f"| **total** | **{_s(ours['segment_s'])}** | "
                     f"{_s(case['former_pipeline']['segment_s']) if 'former_pipeline' in case else '–'} | "
                     f"**{_s(theirs['segment_s'])}** |")
    many = report.get("many_classes")
    if many:
        lines += ["", f"#### {many['classes']}-class output on {'×'.join(str(n) for n in many['input_shape'][::-1])}",
                  "",
                  "| restore (s) | postprocess (s) | restore + postprocess (s) | work memory (MiB) | "
                  "float32 input (MiB) | probabilities on the 1.5 mm grid (MiB) | voxels differing from the plain "
                  "definition | two-class order: holes on the 1.5 mm grid, restore, keep-largest (s) | "
                  "voxels that order changes |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
                  f"| {_s(many['restore_s'])} | {_s(many['postprocess_s'])} | "
                  f"{_s(many['restore_plus_postprocess_s'])} | "
                  f"{many['work_peak_mib']:.0f} | {many['float32_input_mib']:.0f} | {many['probabilities_mib']:.0f} | "
                  f"{_parity(many)} | {_model_grid_order(many)} |"]
    lines += ["", *targets(report)]
    return "\n".join(lines) + "\n"


def _model_grid_order(many: dict) -> str:
    """Time of postprocessing on the model's grid and the voxels it changes (two cells; dashes if not measured)."""
    if "model_grid_voxels_differing" not in many:
        return "– | –"
    return (f"{_s(many['model_grid_postprocess_then_restore_s'])} | "
            f"{many['model_grid_voxels_differing']:,} of {many['foreground_voxels']:,} foreground "
            f"({many['model_grid_voxels_differing_made_background']:,} made background)")


def _parity(many: dict) -> str:
    """Restore vs every class resampled by SimpleITK, on the slab the bench compared (or –)."""
    if "parity_slab_planes" not in many:
        return "–"
    k0, k1 = many["parity_slab_planes"]
    return (f"{many['parity_slab_voxels_differing_from_plain_definition']:,} of "
            f"{many['parity_slab_foreground_voxels']:,} foreground voxels (planes {k0}–{k1 - 1})")


# The speed issue's targets: per input size, total excluding file I/O over the network time (at most)
# and speed-up over MONAI's pipeline (at least); for the many-class output, restore + postprocess
# seconds and work memory over the float32 input (at most).
TARGETS = {"512x512x300": {"over_network": 2.0, "speed_up": 4.0}, "256x256x128": {"speed_up": 2.5}}
MANY_CLASSES_TARGETS = {"seconds": 3.0, "memory_over_input": 3.0}


def _met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def targets(report: dict) -> list:
    lines = ["**Against the targets of the speed issue:**"]
    for case in report["cases"]:
        target = TARGETS.get(case["size"])
        if not target:
            continue
        parts = []
        if "over_network" in target:
            stages, ratio = case["segmentai"]["stages_s"], case["total_excluding_io_over_network"]
            per_run = case.get("total_over_network_per_run")
            spread = ""
            if per_run:  # judged on the median run, not on the fastest one
                ratio = statistics.median(per_run)
                again_runs = case["second_call_total_over_network_per_run"]
                spread = (f"median of {len(per_run)} runs, each in a new process: "
                          f"{', '.join(f'{r:.2f}' for r in per_run)}; their second calls "
                          f"{', '.join(f'{r:.2f}' for r in again_runs)}; the fastest run: ")
            former = case.get("former_pipeline")
            was = (f"; the former pipeline was {former['segment_s'] / former['stages_s']['network']:.1f}×"
                   if former else "")
            second = case["segmentai"].get("second_call")
            again = (f"; a second call in the same process, its network warm: "
                     f"{case['second_call_total_over_network']:.1f}× (network {_s(second['stages_s']['network'])} s "
                     f"of {_s(second['segment_s'])} s)" if second else "")
            parts.append(f"total excluding file I/O ≤ {target['over_network']:g}× the network time — "
                         f"{_met(ratio <= target['over_network'])} ({ratio:.2f}×, {spread}network "
                         f"{_s(stages['network'])} s, "
                         f"restore {_s(stages['restore'])} s, postprocess {_s(stages['postprocess'])} s, "
                         f"preprocess {_s(stages['preprocess'])} s{was}{again})")
        if "speed_up" in target:
            ratio = case["speed_ratio_total"]
            differing = case["voxels_differing"]
            same = (", the same voxels" if differing == 0 else
                    f", {differing:,} voxel{'s differ' if differing > 1 else ' differs'}")
            parts.append(f"≥ {target['speed_up']:g}× MONAI's pipeline at `sw_batch_size` {report['sw_batch_size']} — "
                         f"{_met(ratio >= target['speed_up'])} ({ratio:.1f}×{same})")
        line = f"- {case['size']}: " + "; ".join(parts) + "."
        if "over_network" in target:
            ours = case["segmentai"]
            line += (f" Read + segment + write: {_s(ours.get('read_s', 0))} + {_s(ours['segment_s'])} + "
                     f"{_s(ours.get('write_s', 0))} s.")
        lines.append(line)
    many = report.get("many_classes")
    if many:
        seconds, budget = many["restore_plus_postprocess_s"], MANY_CLASSES_TARGETS["memory_over_input"]
        limit = budget * many["float32_input_mib"]
        lines.append(
            f"- {many['classes']} classes on {'×'.join(str(n) for n in many['input_shape'][::-1])}: restore + "
            f"postprocess ≤ {MANY_CLASSES_TARGETS['seconds']:g} s — {_met(seconds <= MANY_CLASSES_TARGETS['seconds'])} "
            f"({seconds:.1f} s: restore {many['restore_s']:.1f} s, postprocess {many['postprocess_s']:.1f} s); "
            f"work memory ≤ {budget:g}× the float32 input — {_met(many['work_peak_mib'] <= limit)} "
            f"({many['work_peak_mib']:.0f} MiB of {limit:.0f}).")
    return lines


if __name__ == "__main__":
    sys.stdout.write(render(json.loads(Path(sys.argv[1]).read_text())))
