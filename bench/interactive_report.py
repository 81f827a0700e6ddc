"""Markdown tables of an interactive benchmark run (the JSON written by ``bench_interactive.py --out``).

    python bench/interactive_report.py docs/benchmarks/interactive.json > /tmp/tables.md
    python bench/interactive_report.py run.json --latency      # the latency table only

Per case: Dice after 1, 3, 5 and 10 clicks and NoC@85 for every method (clicks protocol); box Dice, final
DSC, DSC AUC and final NSD (CVPR protocol); then the means, the targets of issue 12, and latency.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Dict, List

CLICK_METHODS = ("segmentai", "growcut_roi", "growcut_clicks", "random_walker", "segmentai_clicks_only", "unet")
CVPR_METHODS = ("segmentai", "growcut_roi", "random_walker", "unet")
LABELS = {"segmentai": "SegmentAI (ROI)", "growcut_roi": "GfS ROI", "growcut_clicks": "GfS clicks",
          "random_walker": "RW (ROI)", "segmentai_clicks_only": "SegmentAI clicks only", "unet": "U-Net 1.2.0 alone"}


def _at(curve: List[float], n: int, digits: int = 2) -> str:
    return f"{curve[n - 1]:.{digits}f}" if n <= len(curve) else "–"


def _short(name: str) -> str:
    return name.replace("cat12/", "").replace("pyradiomics/", "").replace("Left ", "L ")


def clicks_table(report: Dict) -> List[str]:
    results = report["results"].get("clicks", {})
    kinds = {c["name"]: c["kind"] for c in report["cases"]}
    methods = [m for m in CLICK_METHODS if any(m in e for e in results.values())]
    out = ["| case | kind | " + " | ".join(f"{LABELS[m]} D@1/3/5/10" for m in methods) + " | NoC@85 "
           + "/".join(LABELS[m].split(" (")[0] for m in methods) + " |", "|---" * (len(methods) + 3) + "|"]
    for name, entry in results.items():
        cells = []
        for m in methods:
            curve = entry.get(m, {}).get("dice", [])
            cells.append(" / ".join(_at(curve, n) for n in (1, 3, 5, 10)) if curve else "–")
        noc = "/".join(str(entry[m]["noc"]["85"]) if m in entry else "–" for m in methods)
        out.append(f"| {_short(name)} | {kinds.get(name, '')} | " + " | ".join(cells) + f" | {noc} |")
    return out


def cvpr_table(report: Dict) -> List[str]:
    results = report["results"].get("cvpr", {})
    methods = [m for m in CVPR_METHODS if any(m in e for e in results.values())]
    out = ["| case | " + " | ".join(f"{LABELS[m]} box / final DSC / AUC / NSD" for m in methods) + " |",
           "|---" * (len(methods) + 1) + "|"]
    for name, entry in results.items():
        cells = []
        for m in methods:
            e = entry.get(m)
            cells.append(f"{e['box_dice']:.2f} / {e['final_dsc']:.2f} / {e['auc']:.2f} / {e['final_nsd']:.2f}"
                         if e else "–")
        out.append(f"| {_short(name)} | " + " | ".join(cells) + " |")
    return out


def means_table(report: Dict) -> List[str]:
    summary = report["summary"]
    out = ["| method | Dice@1 | Dice@3 | Dice@5 | Dice@10 | NoC@80 | NoC@85 | NoC@90 | CVPR box | CVPR final DSC "
           "| CVPR DSC AUC | CVPR final NSD |", "|---" * 12 + "|"]
    for m in CLICK_METHODS:
        c = summary.get("clicks", {}).get(m)
        v = summary.get("cvpr", {}).get(m)
        if not c and not v:
            continue
        row = [LABELS[m]]
        row += [_at(c["dice_per_prompt"], n, 3) for n in (1, 3, 5, 10)] if c else ["–"] * 4
        short = c and len(c["dice_per_prompt"]) < report.get("clicks", 10)
        row += [f"{c['noc'][t]:.1f}" + ("*" if short else "") for t in ("80", "85", "90")] if c else ["–"] * 3
        row += [f"{v['box_dice']:.3f}", f"{v['final_dsc']:.3f}", f"{v['auc']:.2f}", f"{v['final_nsd']:.3f}"] \
            if v else ["–"] * 4
        out.append("| " + " | ".join(row) + " |")
    out += ["", f"\\* over {report.get('rw_clicks', 5)} clicks only ({report.get('rw_clicks', 5) + 1} = not reached): "
            "not comparable with the others' NoC over 10 clicks (11 = not reached)."]
    return out


def targets(report: Dict) -> List[str]:
    """Issue 12's targets, checked against this run."""
    results, summary = report["results"], report["summary"]
    clicks = results.get("clicks", {})
    worse = [(name, e["segmentai"]["dice"][4] - e["growcut_roi"]["dice"][4]) for name, e in clicks.items()
             if "segmentai" in e and "growcut_roi" in e and len(e["segmentai"]["dice"]) >= 5]
    behind = [f"{_short(n)} ({d:+.2f})" for n, d in worse if d < -0.02]
    ours, peer = summary["clicks"].get("segmentai"), summary["clicks"].get("growcut_roi")
    cvpr = summary.get("cvpr", {}).get("segmentai")
    latency = summary["latency_s"].get("segmentai", {})
    lines = ["| target | measured | met |", "|---|---|---|"]
    lines.append(f"| never more than 0.02 Dice behind GfS ROI at 5 clicks, any case | {len(behind)} of {len(worse)} "
                 f"cases behind: {', '.join(behind) or 'none'} | {'yes' if not behind else 'no'} |")
    if ours and peer:
        gain = ours["dice_per_prompt"][2] - peer["dice_per_prompt"][2]
        lines.append(f"| mean Dice@3 ≥ GfS ROI + 0.15 | {ours['dice_per_prompt'][2]:.3f} vs "
                     f"{peer['dice_per_prompt'][2]:.3f} ({gain:+.3f}) | {'yes' if gain >= 0.15 else 'no'} |")
        lines.append(f"| mean NoC@85 ≤ 3 | {ours['noc']['85']:.1f} (GfS ROI {peer['noc']['85']:.1f}) | "
                     f"{'yes' if ours['noc']['85'] <= 3 else 'no'} |")
    if cvpr:
        met = "yes" if cvpr["final_dsc"] >= 0.8 else "no"
        lines.append(f"| CVPR final DSC ≥ 0.80 | {cvpr['final_dsc']:.3f} | {met} |")
        lines.append(f"| CVPR DSC AUC ≥ 3.0 | {cvpr['auc']:.2f} | {'yes' if cvpr['auc'] >= 3.0 else 'no'} |")
    if latency:
        ok = latency["p50"] <= 0.5 and latency["p95"] <= 1.0
        lines.append(f"| latency p50 ≤ 0.5 s, p95 ≤ 1.0 s | p50 {latency['p50']:.2f} s, p95 {latency['p95']:.2f} s | "
                     f"{'yes' if ok else 'no'} |")
    return lines


def latency_table(report: Dict) -> List[str]:
    out = ["| method | p50 | p95 | interactions | p95 per kind |", "|---|---|---|---|---|"]
    for m, v in report["summary"]["latency_s"].items():
        kinds = ", ".join(f"{k} {s:.2f}" for k, s in v["per_kind_p95"].items())
        out.append(f"| {LABELS.get(m, m)} | {v['p50']:.3f} s | {v['p95']:.3f} s | {v['n']} | {kinds} |")
    return out


def cases_table(report: Dict) -> List[str]:
    out = ["| case | modality | kind | grid (crop) | volume | licence | note |", "|---|---|---|---|---|---|---|"]
    for c in report["cases"]:
        out.append(f"| {c['name']} | {c['modality']} | {c['kind']} | {c['grid']} | {c['volume_ml']} ml | "
                   f"{c['licence']} | {c['note']} |")
    return out


def tables(report: Dict) -> str:
    sections = [
        ("Targets of issue 12", targets(report)),
        ("Means over the cases", means_table(report)),
        ("Clicks from an empty mask, per case (Dice after 1/3/5/10 clicks; NoC@85, 11 = not within 10, "
         f"random walker: {report.get('rw_clicks', 5)} clicks, so {report.get('rw_clicks', 5) + 1} = not within)",
         clicks_table(report)),
        ("CVPR 2025 protocol, per case (box Dice / final DSC after 5 clicks / DSC AUC, max 4 / final NSD at 2 mm)",
         cvpr_table(report)),
        ("Latency per interaction", latency_table(report)),
        ("Cases", cases_table(report)),
    ]
    out: List[str] = []
    for title, lines in sections:
        out += [f"### {title}", ""] + lines + [""]
    out.append(f"Run: {report['seconds'] / 60:.1f} min, {report['threads']} thread(s); load before: "
               f"`{report['load_before']}`; after: `{report['load_after']}`.")
    return "\n".join(out)


def latency_only(report: Dict) -> str:
    """The latency table and the run's load alone (``--latency``: a run of the clicks protocol for timing)."""
    return "\n".join(latency_table(report) + ["", f"Run: {report['seconds'] / 60:.1f} min, {report['threads']} "
                                                   f"thread(s); load before: `{report['load_before']}`; after: "
                                                   f"`{report['load_after']}`."])


if __name__ == "__main__":
    data = json.loads(Path(sys.argv[1]).read_text())
    print(latency_only(data) if "--latency" in sys.argv[2:] else tables(data))
