"""The page ``docs/benchmarks-totalseg.md`` below its title, from ``docs/benchmarks/totalseg.json``
(written by ``bench_totalseg.py``).

    python bench/totalseg_report.py docs/benchmarks/totalseg.json > /tmp/totalseg.md

``Testing/Python/test_benchmark_docs.py`` regenerates it and fails when the page differs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

STAGES = ("read", "resample_first", "preprocess", "network", "restore", "resample_back", "postprocess", "write")
MODEL_TEXT = {
    "tiny": "the 2-class nnU-Net model trained here by `nnunetv2` (plans at 3.5 × 1 × 1 mm, features 4–16)",
    "release-size": "the 3 mm release's network with random weights (timing only)",
}


def _peak(run: dict) -> float:
    return max(run["peak_rss_mib"], run["children_peak_rss_mib"])


def render(report: dict) -> str:
    m = report["machine"]
    arch = report["release_arch"]
    lines = [
        "Written by `bench/bench_totalseg.py` (one invocation; each tool in a fresh process per repeat, "
        f"best of {report['repeats']} shown).",
        "",
        f"- Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB RAM, no GPU; torch {m['torch']}, "
        f"TotalSegmentator {report['totalsegmentator']}, nnunetv2 {report['nnunetv2']}.",
        "- TotalSegmentator runs `total --fast` on CPU through its Python API with its defaults (one file per "
        "class, six saving processes; torch on every logical CPU) and with `--ml` (one multi-label file); "
        "SegmentAI runs `segmentai segment --model total_fast` (its catalog model installed from the same "
        "weights zipped as the release archive) and writes one `.seg.nrrd`.",
        f"- Release-size network: nnU-Net PlainConvUNet, features {arch['features_per_stage']}, patch "
        f"{arch['patch_size']} (z, y, x), spacing {arch['spacing']} mm, 118 outputs, random weights seeded 0: "
        "the 3 mm release's plans reconstructed (its weights cannot be downloaded here).",
        "- Cases: CT-like phantoms (int16 HU, LPS order as converted from DICOM): "
        + "; ".join(f"`{name}` at {' × '.join(str(s) for s in c['spacing_xyz'])} mm ({c['file_mib']:.0f} MiB "
                    "compressed NIfTI)" for name, c in report["cases"].items()) + ".",
        "- Time: the tool's call from file to written output, the whole process (Python and torch imports "
        "included) in brackets. Peak RSS: the larger of the process and its largest child.",
        "",
        "| model | case | TotalSegmentator (s) | TotalSegmentator --ml (s) | SegmentAI (s) | faster than --ml "
        "| faster than default | peak RSS --ml / SegmentAI (MiB) | agreement (min Dice, voxels differing) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for model, entry in report["models"].items():
        for case, r in entry["cases"].items():
            b = r["best"]
            a = r["agreement"]
            lines.append(
                f"| {model} | {case} | {b['totalseg-default']['run_s']:.1f} ({b['totalseg-default']['process_s']:.1f}) "
                f"| {b['totalseg-ml']['run_s']:.1f} ({b['totalseg-ml']['process_s']:.1f}) "
                f"| {b['segmentai']['run_s']:.1f} ({b['segmentai']['process_s']:.1f}) "
                f"| {r['speedup_vs_ml']:.2f}× | {r['speedup_vs_default']:.2f}× "
                f"| {_peak(b['totalseg-ml']):.0f} / {_peak(b['segmentai']):.0f} "
                f"| {a['classes_compared']} classes, {a['min_dice_vs_ml']:.4f}, "
                f"{a['voxels_differing_vs_ml']} of {a['voxels']} |")
    fast = [(model, case, r) for model, entry in report["models"].items() for case, r in entry["cases"].items()
            if "bfloat16" in r]
    if fast:
        lines += ["", "SegmentAI with `--precision bfloat16` (oneDNN's bfloat16 kernels; this CPU has AMX):", "",
                  "| model | case | SegmentAI bfloat16 (s) | faster than --ml | faster than float32 "
                  "| agreement with TotalSegmentator (min Dice, voxels differing) |",
                  "|---|---|---:|---:|---:|---|"]
        for model, case, r in fast:
            b, a = r["best"]["segmentai-bfloat16"], r["bfloat16"]["agreement"]
            lines.append(f"| {model} | {case} | {b['run_s']:.1f} ({b['process_s']:.1f}) "
                         f"| {r['bfloat16']['speedup_vs_ml']:.2f}× | {r['bfloat16']['speedup_vs_float32']:.2f}× "
                         f"| {a['classes_compared']} classes, {a['min_dice_vs_ml']:.4f}, "
                         f"{a['voxels_differing_vs_ml']} of {a['voxels']} |")
    lines += ["", "SegmentAI's stages (s):", "",
              "| model | case | " + " | ".join(STAGES) + " |", "|---|---|" + "---:|" * len(STAGES)]
    for model, entry in report["models"].items():
        for case, r in entry["cases"].items():
            stages = r["best"]["segmentai"].get("stages_s", {})
            lines.append(f"| {model} | {case} | " + " | ".join(f"{stages.get(s, 0.0):.2f}" for s in STAGES) + " |")
    lines += [""] + [f"- `{model}`: {MODEL_TEXT.get(model, model)}; {entry['parameters'] / 1e6:.1f} M parameters, "
                     f"checkpoint {entry['checkpoint_mib']:.1f} MiB." for model, entry in report["models"].items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render(json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))))
