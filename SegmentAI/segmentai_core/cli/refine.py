"""``segmentai refine INPUT --fg R,A,S ... -o OUTPUT``: segment or refine one object from clicks.

Also a box (``--box``) and scribbles (``--fg-scribble``/``--bg-scribble``: polylines, points
separated by ``;``).

Points are RAS millimetres (Slicer's convention) unless ``--ijk`` is given, in which case they are
voxel indices ``i,j,k`` in the file's own index order (i fastest, as ITK and Slicer count them).
The prompts are applied as a user would place them: the box first, then the object points, the
background points and the scribbles, each one an interaction of the same session.

With ``--mask`` (a label map or a Slicer ``.seg.nrrd``) one of its segments is refined (``--segment``
when it holds several) and everything else it came with is kept: the other segments' voxels, every
segment's name, colour and terminology, and its other metadata.
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
                        help="previous or initial mask on the input's grid to refine (label map or .seg.nrrd); "
                             "the output keeps its other segments, names, colours and terminology")
    parser.add_argument("--segment", default=None, metavar="NAME|VALUE",
                        help="the segment of --mask to refine, by name or label value (needed when it holds several)")
    parser.add_argument("--fg", action="append", default=[], metavar="R,A,S", help="a point on the object (repeatable)")
    parser.add_argument("--bg", action="append", default=[], metavar="R,A,S",
                        help="a point on the background (repeatable)")
    parser.add_argument("--box", default=None, metavar="R1,A1,S1,R2,A2,S2",
                        help="two opposite corners of a box around the object (flat along one axis: a 2D box); "
                             "a 3D box plus 5 mm is also the region of interest of the prompts after it")
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
    parser.add_argument("--roi", default=None, metavar="R1,A1,S1,R2,A2,S2",
                        help="region of interest: two opposite corners of a box drawn around the object "
                             "(outside is background, as Slicer's Grow-from-seeds ROI; the engine is much stronger "
                             "with one)")
    parser.add_argument("--network-only", action="store_true",
                        help="the interactive network alone, without the geodesic competition on image edges")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    add_trust_code_argument(parser)
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    parser.add_argument("--timings", action="store_true",
                        help="print the process's stages (read, torch import, model load, interaction, write; "
                             "seconds) as JSON on stdout")
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


class _Target:
    """What ``--mask`` brought: its label map, segments and metadata, and the segment being refined."""

    def __init__(self, path: Path, choice: Optional[str]) -> None:
        from ..io import read_segmentation, segmentation_metadata

        self.path = path
        self.labelmap, self.labels = read_segmentation(path)
        self.metadata = segmentation_metadata(path)
        self.label = self._choose(choice)

    def _choose(self, choice: Optional[str]):
        from ..labels import SegmentLabel

        names = ", ".join(f"'{label.name}' ({label.value})" for label in self.labels)
        if choice is None:
            if len(self.labels) > 1:
                raise InputError(f"{self.path} holds {len(self.labels)} segments ({names}): "
                                 "choose the one to refine with --segment NAME|VALUE")
            return self.labels[0] if self.labels else SegmentLabel.default_for(1)
        found = ([label for label in self.labels if label.name == choice]
                 or [label for label in self.labels if label.name.lower() == choice.strip().lower()]
                 or [label for label in self.labels if choice.strip().isdigit() and label.value == int(choice)])
        if not found:
            raise InputError(f"--segment '{choice}': {self.path} has no such segment "
                             f"({names or 'it holds none'})")
        return found[0]

    @property
    def mask(self):
        return self.labelmap.array == self.label.value

    @property
    def others(self):
        return (self.labelmap.array != 0) & ~self.mask

    def write(self, result, output: Path, overwrite: bool) -> None:
        """The label map with the refined segment replaced by ``result``; a ``.seg.nrrd`` output keeps
        every segment's name, colour and terminology, and the mask's other metadata."""
        from ..io import with_segment, write_labelmap, write_segmentation

        labelmap = self.labelmap.with_array(with_segment(self.labelmap.array, self.label.value, result))
        if output.name.lower().endswith(".seg.nrrd"):
            labels = self.labels if any(label.value == self.label.value for label in self.labels) else [self.label]
            write_segmentation(labelmap, labels, output, overwrite=overwrite, extra_metadata=self.metadata)
        else:
            write_labelmap(labelmap, output, overwrite=overwrite)


def _predictor(model: Optional[str], device: str, trust_code: bool = False, network_only: bool = False):
    from ..interaction.predictors import ModelPredictor, RandomWalkerPredictor, find_interactive_model
    from ..interaction.session import default_predictor
    from ..models.registry import ModelRegistry

    if model == FALLBACK_NAME:
        return RandomWalkerPredictor()
    if model is None:
        package = find_interactive_model()
        if package is None:
            return RandomWalkerPredictor()
    else:
        package = ModelRegistry().get(model)
    if network_only:
        return ModelPredictor(package.allow_code() if trust_code else package, device=device)
    # The session's default engine, as in the Slicer panel and the web app: the network as the data
    # term of a geodesic competition on the image's edges (interaction/hybrid.py).
    return default_predictor(device, package=package.allow_code() if trust_code else package)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..interaction.session import InteractionSession
    from ..io import read_volume, write_labelmap

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
    if args.segment is not None and args.mask is None:
        raise InputError("--segment chooses a segment of --mask: give --mask too")
    output = check_output_path(args.output, args.overwrite)
    t_read = time.perf_counter()
    volume = read_volume(args.input)
    read_s = time.perf_counter() - t_read
    if np.issubdtype(volume.array.dtype, np.floating) and not np.isfinite(volume.array).any():
        raise InputError(f"{args.input}: every voxel is NaN or infinite; nothing to segment")  # as 'segment' says
    target = None
    if args.mask is not None:
        target = _Target(args.mask, args.segment)
        geometry = target.labelmap.geometry
        if not geometry.same_grid(volume.geometry):
            raise InputError(f"{args.mask} is not on the grid of {args.input.name} "
                             f"({geometry.describe()} vs {volume.geometry.describe()})")
    roi: Optional[Sequence[float]] = None
    if args.roi is not None:
        roi = parse_numbers(args.roi, 6, "--roi", "R1,A1,S1,R2,A2,S2" if not args.ijk else "i1,j1,k1,i2,j2,k2")
    predictor = _predictor(args.model, args.device, args.trust_code, args.network_only)
    # Start-up costs, paid once per process and timed apart from the interaction: importing PyTorch,
    # then loading the network (a running session pays neither again). Neither is paid where the
    # engine will not run its network (CT: the geodesic answer alone; the random-walker fallback).
    from ..inference.input_check import looks_like_hounsfield
    from ..interaction.predictors import uses_network as predictor_uses_network

    uses_network = predictor_uses_network(predictor, looks_like_hounsfield(volume.array))
    torch_s = load_s = 0.0
    if uses_network:
        t_load = time.perf_counter()
        import torch  # noqa: F401

        torch_s = time.perf_counter() - t_load
        predictor.load()
        load_s = time.perf_counter() - t_load - torch_s
    t0 = time.perf_counter()
    with InteractionSession(predictor) as session:
        session.set_image(volume)
        if roi is not None:
            session.set_roi(roi[:3], roi[3:], space=space, prepare=False)  # the prompts follow at once
        if target is not None:
            session.set_target(target.mask, protected=target.others)
        if box is not None:
            session.add_box(box[:3], box[3:], space=space)
        for point in foreground:
            session.add_point(point, positive=True, space=space)
        for point in background:
            session.add_point(point, positive=False, space=space)
        for points, positive in scribbles:
            session.add_scribble(points, positive=positive, space=space)
        result = session.mask.copy()
    interaction_s = time.perf_counter() - t0
    t_write = time.perf_counter()
    if target is None:
        write_labelmap(volume.with_array(result), output, overwrite=args.overwrite)
        what = "object"
    else:
        result &= ~target.others  # the other segments' voxels stay theirs
        target.write(result, output, args.overwrite)
        what = f"segment '{target.label.name}'"
    write_s = time.perf_counter() - t_write
    voxels = int(result.sum())
    if args.model is None and predictor.name == FALLBACK_NAME:
        print("segmentai: note: no interactive model installed; used the random-walker fallback", file=sys.stderr)
    print(f"Wrote {output} ({what} {voxels} voxels, {voxels * volume.geometry.voxel_volume_mm3 / 1000:.1f} mL; "
          f"{predictor.name}; start-up: " + (f"torch import {torch_s:.1f} s, model load {load_s:.1f} s"
                                              if uses_network else "no network for this image") +
          f"; interaction {interaction_s:.1f} s)", file=sys.stderr)
    if args.timings:
        import json

        timings = {"read": read_s, "torch_import": torch_s, "model_load": load_s, "interaction": interaction_s,
                   "write": write_s}
        print(json.dumps({"predictor": predictor.name, "network": uses_network, "voxels": voxels,
                          "timings_s": timings}))
    return 0
