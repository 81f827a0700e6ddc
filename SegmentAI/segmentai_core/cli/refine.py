"""``segmentai refine INPUT --fg R,A,S ... -o OUTPUT``: segment or refine one object from clicks.

Also a box (``--box``) and scribbles (``--fg-scribble``/``--bg-scribble``: polylines, points
separated by ``;``).

Points are RAS millimetres (Slicer's convention) unless ``--ijk`` is given, in which case they are
voxel indices ``i,j,k`` in the file's own index order (i fastest, as ITK and Slicer count them).
The prompts are applied as a user would place them: the box first, then the object points, the
background points and the scribbles, each one an interaction of the same session.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence

from ..errors import InputError
from .common import add_trust_code_argument, check_output_path

__all__ = ["register", "run", "parse_numbers"]

FALLBACK_NAME = "random-walker"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "refine", help="segment or refine one object from clicks (interactive model)",
        description="Segment one object of a volume from object/background points and an optional box, or refine "
                    "an existing mask with them; writes a label map (0/1) on the input's exact grid.")
    parser.add_argument("input", type=Path, help="image file or DICOM series folder")
    parser.add_argument("--mask", type=Path, default=None,
                        help="previous or initial mask on the input's grid (non-zero = object) to refine")
    parser.add_argument("--fg", action="append", default=[], metavar="R,A,S", help="a point on the object (repeatable)")
    parser.add_argument("--bg", action="append", default=[], metavar="R,A,S",
                        help="a point on the background (repeatable)")
    parser.add_argument("--box", default=None, metavar="R1,A1,S1,R2,A2,S2",
                        help="two opposite corners of a box around the object (flat along one axis: a 2D box)")
    parser.add_argument("--fg-scribble", action="append", default=[], metavar="R,A,S;R,A,S;...",
                        help="a scribble on the object: a polyline through two or more points (repeatable)")
    parser.add_argument("--bg-scribble", action="append", default=[], metavar="R,A,S;R,A,S;...",
                        help="a scribble on the background (repeatable)")
    parser.add_argument("--ijk", action="store_true", help="points are voxel indices i,j,k instead of RAS mm")
    parser.add_argument("-o", "--output", type=Path, required=True,
                        help="output label map (.nii.gz, .nrrd, .seg.nrrd...)")
    parser.add_argument("--model", default=None, metavar="ID|PATH",
                        help=f"interactive model id or folder; default: the installed interactive model, else the "
                             f"classical fallback ('{FALLBACK_NAME}', which can also be named)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    add_trust_code_argument(parser)
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    # Let "-12.5,3,40" be a value, not an option: argparse only knows plain negative numbers.
    # (A private attribute, stable since Python 3.2; "--fg=-12.5,3,40" works in any case.)
    parser._negative_number_matcher = re.compile(r"^-\d*\.?\d+(e[-+]?\d+)?([,;][-+]?\d*\.?\d+(e[-+]?\d+)?)*$")
    parser.set_defaults(func=run)


def parse_numbers(text: str, count: int, option: str, names: str) -> List[float]:
    """``"1,2.5,-3"`` → floats; a one-line InputError naming the option when it is not ``count`` numbers."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != count or not all(v == v and abs(v) != float("inf") for v in values):
        raise InputError(f"{option} '{text}' is not {count} numbers {names}")
    return values


def parse_polyline(text: str, option: str, names: str) -> List[List[float]]:
    """``"x,y,z;x,y,z;..."`` → a list of points (two or more); one-line InputError otherwise."""
    points = [parse_numbers(part, 3, option, names) for part in str(text).split(";") if part.strip()]
    if len(points) < 2:
        raise InputError(f"{option} '{text}' needs two or more points separated by ';' ({names};{names};...)")
    return points


def _predictor(model: Optional[str], device: str, trust_code: bool = False):
    from ..interaction.predictors import ModelPredictor, RandomWalkerPredictor, find_interactive_model
    from ..models.registry import ModelRegistry

    if model == FALLBACK_NAME:
        return RandomWalkerPredictor()
    if model is None:
        package = find_interactive_model()
        if package is None:
            return RandomWalkerPredictor()
    else:
        package = ModelRegistry().get(model)
    return ModelPredictor(package.allow_code() if trust_code else package, device=device)


def run(args: argparse.Namespace) -> int:
    from ..interaction.session import InteractionSession
    from ..io import read_labelmap, read_volume, write_labelmap

    space = "ijk" if args.ijk else "ras"
    names = "i,j,k" if args.ijk else "R,A,S"
    foreground = [parse_numbers(t, 3, "--fg", names) for t in args.fg]
    background = [parse_numbers(t, 3, "--bg", names) for t in args.bg]
    scribbles = ([(parse_polyline(t, "--fg-scribble", names), True) for t in args.fg_scribble]
                 + [(parse_polyline(t, "--bg-scribble", names), False) for t in args.bg_scribble])
    box: Optional[Sequence[float]] = None
    if args.box is not None:
        box = parse_numbers(args.box, 6, "--box", "R1,A1,S1,R2,A2,S2" if not args.ijk else "i1,j1,k1,i2,j2,k2")
    if (not foreground and box is None and not any(positive for _, positive in scribbles)
            and (not (background or scribbles) or args.mask is None)):
        raise InputError("nothing to segment: give at least one --fg point, --fg-scribble or a --box "
                         "(or background prompts with --mask)")
    output = check_output_path(args.output, args.overwrite)
    volume = read_volume(args.input)
    mask = None
    if args.mask is not None:
        mask = read_labelmap(args.mask)
        if not mask.geometry.same_grid(volume.geometry):
            raise InputError(f"{args.mask} is not on the grid of {args.input.name} "
                             f"({mask.geometry.describe()} vs {volume.geometry.describe()})")
    predictor = _predictor(args.model, args.device, args.trust_code)
    t0 = time.perf_counter()
    with InteractionSession(predictor) as session:
        session.set_image(volume)
        if mask is not None:
            session.set_target(mask.array)
        if box is not None:
            session.add_box(box[:3], box[3:], space=space)
        for point in foreground:
            session.add_point(point, positive=True, space=space)
        for point in background:
            session.add_point(point, positive=False, space=space)
        for points, positive in scribbles:
            session.add_scribble(points, positive=positive, space=space)
        result = session.mask.copy()
    write_labelmap(volume.with_array(result), output, overwrite=args.overwrite)
    voxels = int(result.sum())
    if args.model is None and predictor.name == FALLBACK_NAME:
        print("segmentai: note: no interactive model installed; used the random-walker fallback", file=sys.stderr)
    print(f"Wrote {output} (object {voxels} voxels, {voxels * volume.geometry.voxel_volume_mm3 / 1000:.1f} mL; "
          f"{predictor.name}, {time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    return 0
