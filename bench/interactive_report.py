"""Markdown tables of an interactive benchmark run (the JSON written by ``bench_interactive.py --out``).

    python bench/interactive_report.py docs/benchmarks/interactive.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Dict, List

AT = (1, 2, 3, 5, 10)
TITLES = {
    ("clicks", "unseen_structures"): "Clicks from an empty mask: 10 unseen atlas structures",
    ("clicks", "lesions"): "Clicks from an empty mask: 3 lesions (pyradiomics, anisotropic MRI)",
    ("clicks", "whole_brain"): "Clicks from an empty mask: whole brain of the FSL head",
    ("box", "unseen_structures"): "A 2D box on the largest cross-section, then clicks: atlas structures",
    ("box", "lesions"): "A 2D box on the largest cross-section, then clicks: lesions",
}


def tables(report: Dict) -> str:
    """One table per protocol and case group (mean Dice after n prompts, mean NoC), then latency."""
    summary = report["summary"]
    out: List[str] = []
    for (protocol, group), title in TITLES.items():
        methods = summary.get(protocol, {}).get(group)
        if not methods:
            continue
        prompts = "box + clicks" if protocol == "box" else "clicks"
        out += [f"### {title}", "", "| method | " + " | ".join(str(n) for n in AT)
                + " | NoC@80 | NoC@85 | NoC@90 |", "|---" * (len(AT) + 4) + "|"]
        for method, values in methods.items():
            curve = values["dice_per_prompt"]
            cells = [f"{curve[n - 1]:.3f}" if n <= len(curve) else "–" for n in AT]
            noc = [f"{values['noc'][t]:.1f}" for t in ("80", "85", "90")]
            out.append(f"| {method} | " + " | ".join(cells + noc) + " |")
        out += ["", f"(mean Dice after n {prompts}; NoC = prompts to reach that Dice, 11 = not within 10)", ""]
    latency = summary.get("latency_s", {})
    if latency:
        out += ["### Latency per interaction", "", "| method | p50 | p95 | n |", "|---|---|---|---|"]
        for method, values in latency.items():
            out.append(f"| {method} | {values['p50']:.3f} s | {values['p95']:.3f} s | {values['n']} |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    print(tables(json.loads(Path(sys.argv[1]).read_text())))
