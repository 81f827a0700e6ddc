"""Markdown tables of the fine-tuning and export benchmarks, for ``docs/benchmarks-finetune.md``.

    python bench/finetune_report.py docs/benchmarks/finetune.json          # bench_finetune.py
    python bench/finetune_report.py docs/benchmarks/export.json            # bench_export.py
    python bench/finetune_report.py docs/benchmarks/finetune-nnunet.json   # bench_finetune_nnunet.py

The kind of report is recognised by its keys. ``Testing/Python/test_benchmark_docs.py`` regenerates
every table of the page and fails when one differs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List

EXPORT_VARIANTS = {"original": "original (safetensors)", "torchscript": "TorchScript",
                   "torchscript-int8": "TorchScript + int8 dynamic"}


def finetune(report: dict) -> List[str]:
    before, before_t1 = report["before"], report["before_t1"]
    lines = [
        "| k corrected cases | held-out Dice before | held-out Dice after | gain | min after | "
        f"T1 Dice after (before {before_t1['mean']:.3f}) | wall time |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in report["runs"]:
        lines.append(f"| {run['k']} | {before['mean']:.3f} | {run['after']['mean']:.3f} | **{run['gain']:+.3f}** | "
                     f"{run['after']['min']:.3f} | {run['after_t1']['mean']:.3f} | {run['wall_s']:.0f} s |")
    lines += ["", f"Held-out cases: {report['held_out_cases']}; min held-out Dice before: {before['min']:.3f}; "
                  f"plain (not low-field) T2 before: {report['before_plain_t2']['mean']:.3f} "
                  f"(min {report['before_plain_t2']['min']:.3f})."]
    repeat = report.get("repeat_k3_with_cpu_time")
    if repeat:
        val = repeat["val_dice_in_sample"]
        lines += ["", f"Repeat of k = {repeat['k']} with CPU time: in-sample validation Dice {val[0]:.4f} → "
                      f"{val[-1]:.4f}, held-out {repeat['before']['mean']:.3f} → {repeat['after']['mean']:.3f} "
                      f"({repeat['gain']:+.3f}); {repeat['wall_s']:.0f} s of wall time, {repeat['cpu_s']:.0f} "
                      f"CPU-seconds ({repeat['cpu_s'] / 60 / report['machine']['cores']:.1f} minutes of "
                      f"{report['machine']['cores']} fully used cores)."]
    load = report.get("load_average_1min_during_runs")
    if load:
        lines += ["", f"1-minute load average during the runs: {load['min']:.1f}–{load['max']:.1f} (median "
                      f"{load['median']:.1f}) on {report['machine']['cores']} cores."]
    return lines


def export(report: dict) -> List[str]:
    lines = ["| variant | Dice | Dice vs original's output | size | median s / head (loaded CPU) |",
             "|---|---|---|---|---|"]
    for key, variant in report["variants"].items():
        lines.append(f"| {EXPORT_VARIANTS.get(key, key)} | {variant['dice']:.4f} | {variant['dice_vs_original']} | "
                     f"{variant['size_mb']:.2f} MB | {variant['median_s']:.1f} |")
    return lines


def finetune_nnunet(report: dict) -> List[str]:
    before, after = report["held_out_dice_before"], report["held_out_dice_after"]
    names = {"bright": "bright (the shifted one)", "dark": "dark (unchanged)"}
    lines = ["| label | parent (2 folds) | fine-tuned (fold 0) |", "|---|---|---|"]
    for label in before:
        lines.append(f"| {names.get(label, label)} | {before[label]:.3f} | {after[label]:.3f} |")
    lines += ["", f"{report['cases']} corrected cases, {report['epochs']} epochs of {report['iterations_per_epoch']} "
                  f"iterations, {report['held_out_cases']} held-out phantoms (sphere {report['shift_hu']:.0f} HU "
                  f"darker). Validation Dice (mean of both labels) {report['val_dice_before']:.3f} → "
                  f"{report['val_dice_after']:.3f}; {report['seconds_per_epoch_median']:.2f} s per epoch (training "
                  f"and validation) and {report['finetune_wall_s']:.1f} s for the whole fine-tuning run on "
                  f"{report['threads']} thread(s)."]
    return lines


def render(report: dict) -> str:
    if "variants" in report:
        lines = export(report)
    elif "held_out_dice_after" in report:
        lines = finetune_nnunet(report)
    else:
        lines = finetune(report)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render(json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))))
