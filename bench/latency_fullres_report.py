"""Tables of the full-resolution latency bench (``bench_latency_fullres.py``) for
``docs/benchmarks-interactive.md``: one JSON per run; a run of the engine alone (``--no-growcut``,
e.g. the code before a change) gets its own columns beside the others.

    python bench/latency_fullres_report.py docs/benchmarks/latency-fullres-before.json \
        docs/benchmarks/latency-fullres.json

``Testing/Python/test_benchmark_docs.py`` regenerates it and fails when the page differs.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

TARGET_P95_S = 1.0  # the interactive issue: p95 ≤ 1.0 s per interaction, whole-brain-sized objects included


def _p95(values) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


def _cell(method: dict) -> str:
    dice, latency = method["dice"], method["latency_s"]
    return (f"{dice[0]:.3f} / {dice[min(2, len(dice) - 1)]:.3f} / {dice[-1]:.3f} | "
            f"{statistics.median(latency):.2f} / {max(latency):.2f}")


def render(reports: list) -> str:
    m = reports[-1]["machine"]
    lines = [f"**Machine.** {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB RAM, GPU: {m['gpu'] or 'none'}; "
             f"torch {m['torch']}.", ""]
    for n, report in enumerate(reports, 1):
        dirty = ", with uncommitted changes" if report.get("engine_changes_uncommitted") else ""
        lines.append(f"- Run {n}: {report['date']}, engine of commit {report['engine_commit']}{dirty}, "
                     f"{report['threads']} threads, {report['clicks']} clicks; load average before "
                     f"{', '.join(report['load_average_before'])}, after {', '.join(report['load_average_after'])}.")
    columns = [(n, name) for n, report in enumerate(reports, 1)
               for name in ("segmentai", "growcut_roi") if name in report["cases"][0]]
    titles = {"segmentai": "SegmentAI (ROI)", "growcut_roi": "GfS ROI"}
    header = "| case | crop (voxels, spacing) |" + "".join(
        f" {titles[name]}, run {n}: Dice@1 / @3 / @5 | s per click, median / max |" for n, name in columns)
    lines += ["", header, "|---|---|" + "---|---:|" * len(columns)]
    for index, case in enumerate(reports[-1]["cases"]):
        spacing = "×".join(f"{s:g}" for s in case["spacing_mm"])
        size = "×".join(str(s) for s in case["shape_ijk"])
        cells = "".join(f" {_cell(reports[n - 1]['cases'][index][name])} |" for n, name in columns)
        lines.append(f"| {case['name']} ({case['modality']}) | {size} ({case['voxels'] / 1e6:.1f} M), {spacing} mm |"
                     + cells)
    lines.append("")
    for n, report in enumerate(reports, 1):
        latencies = [t for case in report["cases"] for t in case["segmentai"]["latency_s"]]
        p95 = _p95(latencies)
        met = "met" if p95 <= TARGET_P95_S else "**not met**"
        lines.append(f"- Run {n}: SegmentAI p50 {statistics.median(latencies):.2f} s, p95 {p95:.2f} s per click over "
                     f"{len(latencies)} clicks (target p95 ≤ {TARGET_P95_S:g} s: {met}).")
    return "\n".join(lines) + "\n"


def main() -> None:
    print(render([json.loads(Path(path).read_text()) for path in sys.argv[1:]]), end="")


if __name__ == "__main__":
    main()
