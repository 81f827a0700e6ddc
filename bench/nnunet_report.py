"""The page ``docs/benchmarks-nnunet.md`` below its title, from ``docs/benchmarks/nnunet.json``
(written by ``bench_nnunet.py``).

    python bench/nnunet_report.py docs/benchmarks/nnunet.json > /tmp/nnunet.md

``Testing/Python/test_benchmark_docs.py`` regenerates it and fails when the page differs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# The benchmark's fixed set-up (bench_nnunet.py): the tiny model's widths and the case's spacing.
MODEL_FEATURES = (8, 16, 32, 64)
CASE_SPACING_XYZ = (3.0, 0.9, 0.9)


def render(report: dict) -> str:
    m = report["machine"]
    r = report["result"]
    lines = [
        "Written by `bench/bench_nnunet.py` (one invocation; each side in a fresh process per repeat, "
        "best repeat shown).",
        "",
        f"- Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB RAM; torch {m['torch']}, "
        f"{report['threads']} torch threads on both sides, CPU only; the machine was shared with other work.",
        f"- Model: nnU-Net v2 3d_fullres trained by `nnunetv2` {report['nnunetv2']} here (PlainConvUNet, "
        f"features {list(MODEL_FEATURES)}, patch {report['patch_size']} in nnU-Net's axis order, "
        f"folds {report['folds']}, "
        f"mirroring {'on' if report['mirror'] else 'off'} on both sides).",
        f"- Case: 256×256×128 voxels (i×j×k), spacing {' × '.join(str(s) for s in CASE_SPACING_XYZ)} mm; "
        "the model's spacing is 3.5 × 1 × 1 mm, so both sides resample on the way in and out.",
        "",
        "| | nnUNetPredictor | SegmentAI | ratio |",
        "|---|---:|---:|---:|",
        f"| time (s), best of {report['repeats']} | {r['nnunet']['seconds']:.1f} | {r['segmentai']['seconds']:.1f} | "
        f"{r['speedup']:.2f}× faster |",
        f"| CPU time (s, user+sys) | {r['nnunet']['cpu_seconds']:.1f} | {r['segmentai']['cpu_seconds']:.1f} | "
        f"{r['cpu_time_ratio']:.2f}× less |",
        f"| peak RSS (MiB) | {r['nnunet']['peak_rss_mib']:.0f} | {r['segmentai']['peak_rss_mib']:.0f} | "
        f"{r['rss_ratio']:.2f} of nnU-Net's |",
        "",
        "Parity (same label map expected): "
        + ", ".join(f"label {k}: Dice {v:.5f}" for k, v in r["dice"].items())
        + f"; {r['voxels_differing']} of {r['voxels']} voxels differ.",
        "",
        "Both sides compute the same thing: the same windows, Gaussian weights, float16 sums and fold averaging as",
        "nnU-Net (so the label maps agree), on the same number of threads. SegmentAI runs several windows per",
        "forward pass (nnU-Net runs one) and resamples in float32 where nnU-Net's predictor uses float64 copies,",
        "which is where its lower memory comes from. Wall time on a machine shared with other jobs is noisy:",
        "the CPU-time ratio is the steadier figure.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render(json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))))
