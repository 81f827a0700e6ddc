"""Tables of ``docs/benchmarks/refine-cold.json`` (written by ``bench_refine_cold.py``) for
``docs/benchmarks-interactive.md``.

    python bench/refine_cold_report.py docs/benchmarks/refine-cold.json

``Testing/Python/test_benchmark_docs.py`` regenerates it and fails when the page differs.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

STAGES = ("read", "torch_import", "model_load", "interaction", "write")
TARGET_S = 3.0  # the interactive issue: a cold refine on a 128³ crop in at most 3 s


def _median_run(runs: list) -> dict:
    """The run whose wall is the median (the lower middle one for an even count)."""
    ordered = sorted(runs, key=lambda run: run["wall_s"])
    return ordered[(len(ordered) - 1) // 2]


def render(report: dict) -> str:
    m = report["machine"]
    lines = [
        f"**Machine.** {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB RAM, GPU: "
        f"{m['gpu'] or 'none'}; Python {m['python']}, torch {m['torch']}. Run {report['date']}, "
        f"{report['repeats']} repeats; load average before {', '.join(report['load_average_before'])}, "
        f"after {', '.join(report['load_average_after'])}. Each row is a new `segmentai refine` process per "
        "run; *rest* is its wall minus the stages it reports (the interpreter's start and the imports "
        "before `refine` runs).",
        "",
        "| crop (128³) | prompt | network | wall, median (s) | walls of the runs (s) | read / torch import / "
        "model load / interaction / write / rest, median run (s) |",
        "|---|---|---|---:|---|---|",
    ]
    for name, crop in report["crops"].items():
        spacing = crop["spacing_mm"][0]
        for prompt, runs in crop["runs"].items():
            middle = _median_run(runs)
            stages = " / ".join(f"{middle['stages_s'][s]:.2f}" for s in STAGES) + f" / {middle['rest_s']:.2f}"
            network = "yes" if middle.get("network", True) else "no (CT: geodesic)"
            walls = ", ".join(f"{run['wall_s']:.2f}" for run in runs)
            lines.append(f"| {name}, {spacing:g} mm | {prompt} | {network} | "
                         f"{statistics.median(r['wall_s'] for r in runs):.2f} | {walls} | {stages} |")
    slowest, median = report["wall_s_max"], report["wall_s_median"]
    met = "met" if slowest <= TARGET_S else "**not met**"
    lines += ["", f"Target: a cold `refine` on a 128³ crop in ≤ {TARGET_S:g} s — {met} (every run: slowest "
                  f"{slowest:.2f} s, median {median:.2f} s)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    print(render(json.loads(Path(sys.argv[1]).read_text())), end="")


if __name__ == "__main__":
    main()
