"""``segmentai sample -o DIR``: write the bundled sample volume and its reference segmentation."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from ..errors import OutputError

__all__ = ["register", "run", "SAMPLE_FILES"]

SAMPLE_FILES = ("sample_t1.nii.gz", "sample_brain_mask.nii.gz")


def register(subparsers) -> None:
    parser = subparsers.add_parser("sample", help="write the bundled sample volume and its reference mask")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="DIR", help="folder to write into")
    parser.add_argument("--overwrite", action="store_true", help="replace files that exist")
    parser.set_defaults(func=run)


def sample_dir() -> Path:
    from ..resources import resources_dir

    return resources_dir() / "SampleData"


def run(args: argparse.Namespace) -> int:
    source = sample_dir()
    out: Path = args.output
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} exists and is not a folder")
    for name in SAMPLE_FILES:
        if (out / name).exists() and not args.overwrite:
            raise OutputError(f"{out / name} exists; pass --overwrite to replace it")
    out.mkdir(parents=True, exist_ok=True)
    for name in SAMPLE_FILES + ("README.md",):
        tmp = out / f".{name}.tmp"
        shutil.copyfile(source / name, tmp)
        tmp.replace(out / name)
    print(f"Wrote {out / SAMPLE_FILES[0]} (T1 MRI, ROBEX reference head, BSD) and {out / SAMPLE_FILES[1]}",
          file=sys.stderr)
    return 0
