"""Markdown tables of ``docs/benchmarks/finetune-real.json`` (written by ``bench_finetune_real.py``).

    python bench/finetune_real_report.py docs/benchmarks/finetune-real.json > /tmp/finetune-real.md

The tables in ``docs/benchmarks-finetune.md`` are pasted from this output, never typed by hand.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _dice(run: dict) -> str:
    return " / ".join(f"{score['dice']:.3f}" for score in run["test"])


def _hd(run: dict) -> str:
    values = [score.get("hd95_mm") for score in run["test"]]
    return " / ".join("–" if v is None else f"{v:.1f}" for v in values)


def render(report: dict) -> str:
    machine = report["machine"]
    load = report.get("load_average_at_start")
    lines = [
        f"**Machine.** {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB RAM, "
        f"GPU: {machine.get('gpu') or 'none'}; torch {machine['torch']} with {report['threads']} thread(s) per run. "
        f"Parent model {report['model']}; each training run had the budget in the table (`--minutes`, filled "
        "by the run)."
        + (f" Highest load average at the start of a bench process: {', '.join(f'{v:.1f}' for v in load)} "
           "(1, 5, 15 min)." if load else ""),
        "",
        "| case | modality | protocol | corrected cases | budget (min) | test Dice: parent | fine-tuned | "
        "from scratch | fine-tuned HD95 (mm) | run (s) / epochs (best) | validation Dice before → after | "
        "grid and window chosen |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for case in report["cases"]:
        tuned, scratch = case["finetuned"], case.get("scratch")
        window = tuned["normalization"].get("window")
        grid = f"{tuned['spacing'][0]:g} mm" + (f", [{window[0]:.0f}, {window[1]:.0f}] HU" if window else
                                                 f", {tuned['normalization']['type']}")
        lines.append(
            f"| {case['case']} ({case['structure']}) | {case['modality']} | {case['protocol']} | "
            f"{case['corrected_cases']} | {case['minutes']:g} | {_dice(case['parent'])} | **{_dice(tuned)}** | "
            f"{_dice(scratch) if scratch else '–'} | {_hd(tuned)} | {tuned['wall_s']:.0f} / {tuned['epochs']} "
            f"({tuned['best_epoch']}) | {tuned['val_dice_before']:.3f} → {tuned['val_dice_after']:.3f} "
            f"({tuned['validation']}) | {grid} |")
    return "\n".join(lines) + "\n"


def merge(reports: list) -> dict:
    """One report of several runs of the bench (each case row carries its own budget)."""
    merged = dict(reports[0])
    merged["cases"] = [case for report in reports for case in report["cases"]]
    loads = [report.get("load_average_at_start") for report in reports if report.get("load_average_at_start")]
    merged["load_average_at_start"] = [max(load[i] for load in loads) for i in range(3)] if loads else None
    return merged


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    paths = [Path(a) for a in argv] or [Path(__file__).resolve().parents[1] / "docs/benchmarks/finetune-real.json"]
    sys.stdout.write(render(merge([json.loads(path.read_text()) for path in paths])))


if __name__ == "__main__":
    main()
