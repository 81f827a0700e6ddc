"""``segmentai dataset add|list|validate``: training cases in nnU-Net v2's raw layout."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, List, Optional

from ..errors import InputError

__all__ = ["register", "run_add", "run_list", "run_validate"]


def register(subparsers) -> None:
    """Add the ``dataset`` command and its sub-commands."""
    parser = subparsers.add_parser(
        "dataset", help="manage training cases (corrected segmentations)",
        description="Training datasets in nnU-Net v2's raw layout (imagesTr/, labelsTr/, dataset.json), "
                    "usable by segmentai-train, nnU-Net and MONAI.")
    sub = parser.add_subparsers(dest="dataset_command", metavar="ACTION")
    sub.required = True

    add = sub.add_parser("add", help="copy a corrected case into a dataset (new case id, never overwrites)")
    add.add_argument("image", metavar="IMAGE", help="image volume (NRRD, NIfTI, MHA or DICOM folder)")
    add.add_argument("segmentation", metavar="SEGMENTATION", help=".seg.nrrd or label map on the image's grid")
    add.add_argument("--dataset", required=True, type=Path, metavar="DIR", help="dataset folder (created if new)")
    add.add_argument("--labels", nargs="+", default=None, metavar="VALUE=NAME",
                     help="names of label values (override the segmentation's own segment names)")
    add.add_argument("--model-id", default=None, metavar="ID@VERSION", help="model that produced the draft")
    add.add_argument("--channel", default=None, metavar="NAME",
                     help="channel name for a new dataset (default: the model's input channel, else 'image')")
    add.add_argument("--note", default=None, help="free text stored in the case's provenance")
    add.add_argument("--allow-duplicate", action="store_true",
                     help="add the image even if the dataset holds the same image already (same voxels)")
    add.set_defaults(func=run_add)

    lst = sub.add_parser("list", help="list the cases of a dataset")
    lst.add_argument("dataset", metavar="DIR", type=Path)
    lst.set_defaults(func=run_list)

    val = sub.add_parser("validate",
                         help="check geometry, label values, empty labels and duplicate images of every case")
    val.add_argument("dataset", metavar="DIR", type=Path)
    val.set_defaults(func=run_validate)


def parse_label_names(items: Optional[List[str]]) -> Optional[Dict[int, str]]:
    """``["1=Brain", "2=Tumor"]`` → ``{1: "Brain", 2: "Tumor"}`` (InputError on a malformed item)."""
    if not items:
        return None
    names: Dict[int, str] = {}
    for item in items:
        value, sep, name = item.partition("=")
        if not sep or not value.strip().isdigit() or not name.strip() or int(value) == 0:
            raise InputError(f"--labels expects VALUE=NAME with VALUE > 0 (e.g. 1=Brain), got {item!r}")
        names[int(value)] = name.strip()
    return names


def _model_channel(model_id: Optional[str]) -> Optional[str]:
    if not model_id:
        return None
    from ..errors import ModelError
    from ..models.registry import ModelRegistry

    try:
        return ModelRegistry().get(model_id).manifest.input_channels[0]
    except ModelError:
        return None  # the model may live elsewhere; provenance still records its name


def run_add(args: argparse.Namespace) -> int:
    from ..dataset import add_case
    from ..io import read_segmentation, read_volume
    from ..models.package import sha256_of_file

    image = read_volume(args.image)
    labelmap, segments = read_segmentation(args.segmentation)
    names = {s.value: s.name for s in segments}
    names.update(parse_label_names(args.labels) or {})
    provenance = {
        "source_image": {"path": str(Path(args.image).resolve()),
                         "sha256": sha256_of_file(args.image) if Path(args.image).is_file() else None},
        "source_segmentation": {"path": str(Path(args.segmentation).resolve()),
                                "sha256": sha256_of_file(args.segmentation)},
        "draft_model": args.model_id,
    }
    if args.note:
        provenance["note"] = args.note
    channel = args.channel or _model_channel(args.model_id) or "image"
    case_id = add_case(args.dataset, image, labelmap, names, provenance, channel_names=[channel],
                       allow_duplicate=args.allow_duplicate)
    print(f"added {case_id} to {args.dataset}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    from ..dataset import list_cases, load_dataset

    info = load_dataset(args.dataset)
    cases = list_cases(args.dataset)
    labels = ", ".join(f"{v}={n}" for v, n in info.foreground.items())
    print(f"{args.dataset}: {len(cases)} case(s); channels {', '.join(info.channel_names.values())}; labels {labels}")
    for case in cases:
        record = case.provenance or {}
        state = "ok" if case.image and case.label else ("no label" if case.image else "no image")
        print(f"  {case.case_id}  {state:8s}  added {record.get('added', '?')}  "
              f"draft model {record.get('draft_model') or '-'}")
    return 0


def run_validate(args: argparse.Namespace) -> int:
    from ..dataset import validate_dataset

    problems = validate_dataset(args.dataset)
    for problem in problems:
        print(f"{args.dataset}: {problem}", file=sys.stderr)
    if problems:
        raise InputError(f"dataset {args.dataset}: {len(problems)} problem(s) found")
    print(f"dataset {args.dataset}: ok")
    return 0
