"""``segmentai segment INPUT -o OUTPUT``: segment a volume with a model package."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Optional

from .common import add_model_argument, check_output_path, resolve_model
from .progress_bar import TerminalProgress

__all__ = ["register", "run"]


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "segment", help="segment a CT/MRI volume", description="Segment a volume (NRRD, NIfTI, MHA or a DICOM "
        "folder) and write a Slicer .seg.nrrd or a label map on the input's exact grid.")
    parser.add_argument("input", type=Path, help="image file or DICOM series folder")
    parser.add_argument("-o", "--output", type=Path, required=True,
                        help="output: .seg.nrrd (segments with names, colours, terminology) or .nii.gz/.nrrd/.mha")
    add_model_argument(parser)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument("--roi", default=None, metavar="NAME[,NAME...]",
                        help="keep only these classes; a catalog model of several networks (e.g. total) then runs "
                             "only the networks that segment them")
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=False,
                        help="mirror test-time augmentation (slower, slightly smoother)")
    parser.add_argument("--precision", default="float32", choices=["float32", "bfloat16"],
                        help="the network's arithmetic: bfloat16 is about 1.7-2.5x faster on CPUs with AMX or "
                             "AVX-512 BF16 and differs from float32 in a few boundary voxels per thousand")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    parser.add_argument("--overview", type=Path, default=None, metavar="PNG", help="also write a PNG overview")
    parser.add_argument("--memory-budget", type=float, default=None, metavar="GIB",
                        help="RAM the job may use (default: 3/4 of the available memory)")
    parser.add_argument("--timings", action="store_true", help="print per-stage timings as JSON on stdout")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress (a bar on a terminal, otherwise a line per tenth with the time left)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..inference.engine import Segmenter
    from ..inference.input_check import input_warnings
    from ..errors import Cancelled
    from ..io import read_volume, write_labelmap, write_segmentation
    from ..io.staging import commit, temporary_path
    from ..progress import Progress

    output = check_output_path(args.output, args.overwrite)
    if args.overview is not None:
        check_output_path_png(args.overview, args.overwrite)
    budget = memory_budget_bytes(args.memory_budget)
    from ..catalog.multipart import MultiPartSegmenter, class_values, keep_classes, multipart_segmenter

    roi = [name for name in (args.roi or "").split(",") if name.strip()]
    # A catalog model of several networks (TotalSegmentator's total) runs its parts and merges them.
    segmenter = multipart_segmenter(args.model, roi=roi, device=args.device, tta=args.tta,
                                    memory_budget_bytes=budget, precision=args.precision)
    if segmenter is None:
        package = resolve_model(args.model, trust_code=args.trust_code)
        segmenter = Segmenter(package, device=args.device, tta=args.tta, memory_budget_bytes=budget,
                              precision=args.precision)
        segmenter.load_in_background()  # while the volume is read: the reader releases the GIL
    started = time.perf_counter()
    volume = read_volume(args.input)
    read_s = time.perf_counter() - started
    whole = roi and not isinstance(segmenter, MultiPartSegmenter)  # one network: runs whole, other classes dropped
    if whole:
        class_values({label.value: label.name for label in segmenter.manifest.labels}, roi, str(args.model))
    for warning in input_warnings(volume.array, segmenter.manifest):  # a mask given as a T1, CT given to an MR model
        print(f"segmentai: warning: {args.input.name}: {warning}", file=sys.stderr, flush=True)
    bar = TerminalProgress(f"Segmenting {args.input.name}", enabled=not args.quiet)  # lines when not a terminal
    try:
        result = segmenter.segment(volume, Progress(bar), name=str(args.input))
    finally:
        bar.close()
    if whole:
        result = keep_classes(result, roi, result.model_id)
    metadata = {"SegmentAI_Model": result.model_id, "SegmentAI_Source": args.input.name}
    # Every output is staged under a hidden name and all are renamed together at the end:
    # Ctrl-C or a failure while one is written leaves none of them (see io/staging.py).
    staged = [(temporary_path(output), output)]
    if args.overview is not None:
        staged.append((temporary_path(args.overview), args.overview))
    started = time.perf_counter()
    try:
        if output.name.lower().endswith(".seg.nrrd"):
            write_segmentation(result.labelmap, result.labels, staged[0][0], extra_metadata=metadata)
        else:
            write_labelmap(result.labelmap, staged[0][0])
        if args.overview is not None:
            from ..overview import write_overview

            write_overview(volume, result.labelmap, result.labels, staged[1][0],
                           title=f"{args.input.name} — {result.model_id}")
        interrupted = commit(staged)
        write_s = time.perf_counter() - started
    finally:
        for temporary, _ in staged:
            if temporary.exists():
                temporary.unlink()
    if interrupted:
        raise Cancelled(f"interrupted after the outputs were complete; written: "
                        f"{', '.join(str(final) for _, final in staged)}")
    for note in result.notes:
        print(f"segmentai: note: {note}", file=sys.stderr)
    if args.timings:
        timings = {"read": read_s, **result.timings, "write": write_s}
        print(json.dumps({"model": result.model_id, "device": result.device, "timings_s": timings}))
    counts = {label.name: int((result.labelmap.array == label.value).sum()) for label in result.labels}
    summary = ", ".join(f"{name} {n * volume.geometry.voxel_volume_mm3 / 1000:.1f} mL" for name, n in counts.items())
    print(f"Wrote {output} ({summary})", file=sys.stderr)
    return 0


def memory_budget_bytes(gib: Optional[float]) -> Optional[int]:
    """``--memory-budget`` in bytes (None: the default); NaN, infinite, zero or negative values are refused."""
    from ..errors import InputError

    if gib is None:
        return None
    if not math.isfinite(gib) or gib <= 0:
        raise InputError(f"--memory-budget must be a positive number of GiB, got {gib}")
    return int(gib * 1024**3)


def check_output_path_png(path: Path, overwrite: bool) -> None:
    from ..errors import OutputError
    from ..io.staging import check_writable_folder

    if path.suffix.lower() != ".png":
        raise OutputError(f"{path}: the overview must be a .png file")
    if path.exists() and not overwrite:
        raise OutputError(f"{path} exists; pass --overwrite to replace it")
    if path.is_symlink() and not path.exists() and not overwrite:
        raise OutputError(f"{path} is a link to a missing file; pass --overwrite to replace the link")
    if path.is_dir():
        raise OutputError(f"{path} is a folder; give a file name")
    check_writable_folder(path.parent)
