"""Markdown tables of ``docs/benchmarks/segment.json`` (written by ``bench_segment.py``).

    python bench/segment_report.py docs/benchmarks/segment.json > /tmp/segment.md

The tables in ``docs/benchmarks.md`` are pasted from this output, never typed by hand.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

STAGES = ("load_model", "preprocess", "network", "restore", "postprocess")


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
                  "float32 input (MiB) | probabilities on the 1.5 mm grid (MiB) |",
                  "|---:|---:|---:|---:|---:|---:|",
                  f"| {_s(many['restore_s'])} | {_s(many['postprocess_s'])} | "
                  f"{_s(many['restore_plus_postprocess_s'])} | "
                  f"{many['work_peak_mib']:.0f} | {many['float32_input_mib']:.0f} | {many['probabilities_mib']:.0f} |"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render(json.loads(Path(sys.argv[1]).read_text())))
