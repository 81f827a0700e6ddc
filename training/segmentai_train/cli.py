"""segmentai-train: fine-tune a model package on corrected cases, or export one.

    segmentai-train finetune --model brain-t1-extraction --data cases/ --out runs/ft1 --epochs 20
    torchrun --nproc_per_node=2 -m segmentai_train.cli finetune --model ... --data ... --out ...
    segmentai-train export runs/ft1/model --format torchscript --quantize int8 --out exported/
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

__all__ = ["main", "build_parser", "finetune_config"]


class _DefaultsFormatter(argparse.HelpFormatter):
    """Shows ``(default: X)`` after each option's help, except where there is no default to show."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        hidden = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        if "%(default)" in text or hidden or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


def _finetune_parser(sub) -> None:
    from .finetune_config import FinetuneConfig  # not .finetune: --help needs no torch

    d = FinetuneConfig()
    p = sub.add_parser("finetune", help="fine-tune a model on a dataset of corrected cases",
                       formatter_class=_DefaultsFormatter,
                       description="Fine-tune a model package on a dataset (nnU-Net v2 raw layout); writes a new "
                                   "model package to OUT/model and never modifies the source model. On 2 CPU cores "
                                   "an epoch of the bundled brain model takes 5-20 s (20 epochs: 2-7 min; "
                                   "--minutes 10 fills ten minutes); progress is a bar on a terminal, otherwise "
                                   "lines with the time left.")
    p.add_argument("--model", required=True, metavar="ID|PATH", help="model id, id@version or package folder")
    p.add_argument("--data", required=True, type=Path, metavar="DIR", help="dataset folder ('segmentai dataset add')")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="run folder (checkpoints, curves, model/)")
    p.add_argument("--epochs", type=int, default=None,
                   help=f"passes of --iterations steps each (default: {d.epochs}; with --minutes: as many as fill "
                        "the budget, planned from the measured epoch time)")
    p.add_argument("--iterations", type=int, default=d.iterations_per_epoch, help="optimiser steps per epoch")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="global patches per micro-step")
    p.add_argument("--accumulate", type=int, default=d.accumulate, help="gradient accumulation micro-steps")
    p.add_argument("--device", default=d.device, help="auto, cpu, cuda or mps")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in OUT")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run's files (metrics.csv, training_curve.png, checkpoint) in a non-empty OUT")
    p.add_argument("--lr", type=float, default=d.learning_rate, help="peak learning rate (decoder)")
    p.add_argument("--encoder-lr-scale", type=float, default=d.encoder_lr_scale, help="encoder rate / decoder rate")
    p.add_argument("--freeze-encoder-epochs", type=int, default=d.freeze_encoder_epochs,
                   help="epochs during which the encoder does not learn")
    p.add_argument("--optimizer", choices=["adamw", "sgd"], default=d.optimizer, help="optimiser")
    p.add_argument("--schedule", choices=["cosine", "poly"], default=d.schedule, help="learning-rate decay")
    p.add_argument("--warmup", type=int, default=d.warmup_iterations, help="warm-up steps")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed (patches, augmentation, split)")
    p.add_argument("--val-fraction", type=float, default=d.val_fraction, help="share of cases held out (0: in-sample)")
    p.add_argument("--folds", type=int, default=d.folds, help="k-fold validation with k folds (use with --fold)")
    p.add_argument("--fold", type=int, default=d.fold, help="which fold validates (with --folds)")
    p.add_argument("--patience", type=int, default=d.patience, help="early-stopping patience in epochs (0: off)")
    p.add_argument("--patch-size", type=int, nargs=3, default=None, metavar=("X", "Y", "Z"),
                   help="training patch in voxels (default: the model's inference patch)")
    p.add_argument("--class-weights", type=float, nargs="+", default=None,
                   help="cross-entropy weights, background first")
    p.add_argument("--bn", dest="bn_mode", choices=["train", "frozen"], default=d.bn_mode,
                   help="batch norm: learn statistics (recalibrated for eval) or keep the parent's")
    p.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--minutes", type=float, default=None,
                   help="time budget of the whole run (reading the cases to writing the package); without --epochs "
                        "the run fills it, with --epochs it stops after the epoch in which it runs out")
    p.add_argument("--max-epochs", type=int, default=d.max_epochs, help="the most epochs a budget-filling run plans")
    p.add_argument("--holdout-fraction", type=float, default=d.holdout_fraction,
                   help="with 1-2 cases: the share of each labelled structure (its first part along its longest "
                        "axis) held aside to validate on (0: validate on the training cases)")
    p.add_argument("--from-scratch", action="store_true",
                   help="train the parent's architecture from freshly initialised weights (a baseline to compare "
                        "fine-tuning with)")
    p.add_argument("--parent-anchor", type=float, default=None, metavar="WEIGHT",
                   help="pull the weights toward the parent's (L2-SP: WEIGHT x their summed squared difference); "
                        "default 0.01 when the parent's own labels are trained, else 0")
    p.add_argument("--keep-parent-preprocessing", dest="plan_data", action="store_false",
                   help="keep the parent's modality, normalisation, spacing and postprocessing instead of choosing "
                        "them from the cases (CT window, spacing for the structure's size)")
    p.add_argument("--no-threshold-calibration", dest="calibrate_threshold", action="store_false",
                   help="keep the 0.5 decision threshold instead of choosing each new class's threshold on the "
                        "held-aside validation")
    p.add_argument("--no-parent-guard", dest="parent_guard", action="store_false",
                   help="the parent's own labels: do not keep the new model's foreground within the reach the "
                        "corrections showed from the parent's answer (the package then runs without the parent)")
    p.add_argument("--nnunet-fold", dest="source_fold", default=None, metavar="FOLD",
                   help="imported nnU-Net models: the fold whose weights to start from (default: the first)")
    p.add_argument("--version", default=None, help="version of the new package (default: parent's patch + 1)")
    p.add_argument("--new-id", default=None, help="id of the new package (default: the parent's)")
    p.add_argument("--accept-worse", action="store_true",
                   help="publish as the next version even if validation Dice is lower than the parent's (by default "
                        "such a model is versioned below the parent, which stays the default)")
    p.add_argument("--json-progress", action="store_true", help="JSON progress lines on stdout")
    p.add_argument("--no-progress-bar", action="store_true",
                   help="no bar on a terminal and no step lines elsewhere; a line per epoch stays")
    p.set_defaults(func=_run_finetune)


def _export_parser(sub) -> None:
    p = sub.add_parser("export", help="export a model package to TorchScript (optionally int8) or ONNX")
    p.add_argument("model", metavar="MODEL", help="model id, id@version or package folder")
    p.add_argument("--format", choices=["torchscript", "onnx"], default="torchscript")
    p.add_argument("--quantize", choices=["int8"], default=None,
                   help="dynamic int8 quantisation of Linear layers (CPU); refused for networks without any "
                        "(convolutional U-Nets)")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder of the exported package")
    p.add_argument("--version", default=None, help="version of the exported package (default: the source's)")
    p.set_defaults(func=_run_export)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segmentai-train", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _finetune_parser(sub)
    _export_parser(sub)
    return parser


# CLI options whose FinetuneConfig field has another name; every other option of the same name as a
# field is copied as is, so a new field needs only its add_argument line.
_RENAMED = {"iterations": "iterations_per_epoch", "lr": "learning_rate", "warmup": "warmup_iterations",
            "new_id": "model_id"}


def finetune_config(args: argparse.Namespace):
    """The :class:`FinetuneConfig` of parsed ``finetune`` options."""
    from dataclasses import fields

    from .finetune_config import FinetuneConfig

    values = vars(args)
    names = {f.name for f in fields(FinetuneConfig)}
    settings = {_RENAMED.get(key, key): value for key, value in values.items() if _RENAMED.get(key, key) in names}
    settings["epochs"] = args.epochs if args.epochs is not None else FinetuneConfig.epochs
    settings["fill_budget"] = bool(args.minutes) and args.epochs is None
    settings["time_limit_s"] = args.minutes * 60 if args.minutes else None
    settings["amp"] = not args.no_amp
    settings["progress_bar"] = not args.no_progress_bar
    return FinetuneConfig(**settings)


def _run_finetune(args: argparse.Namespace) -> int:
    import torch

    from .finetune import finetune, worse_warning

    if args.threads:
        torch.set_num_threads(args.threads)
    config = finetune_config(args)
    result = finetune(args.model, args.data, args.out, config, resume=args.resume, overwrite=args.overwrite)
    if result.package_dir is not None and not args.json_progress:
        print(f"wrote {result.package_dir} ({result.model}; validation Dice {result.val_dice_before:.4f} -> "
              f"{result.val_dice_after:.4f}, {result.epochs} epochs)")
    if result.worse_than_parent:
        print(worse_warning(result), file=sys.stderr, flush=True)
    return 0


def _run_export(args: argparse.Namespace) -> int:
    from .export import export_model

    report = export_model(args.model, args.out, fmt=args.format, quantize=args.quantize, version=args.version)
    # Say only what happened: int8 here means the Linear layers the report counts, nothing more.
    int8 = (f", int8 dynamic: {report['quantized_layers']} Linear layers quantised, convolutions float32"
            if report["quantized_layers"] else "")
    print(f"wrote {report['folder']} ({report['format']}{int8}; {report['size_bytes'] / 1e6:.1f} MB)")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    from segmentai_core.cli.main import dispatch

    return dispatch(build_parser(), argv, "interrupted; the last checkpoint is kept (use --resume).")


if __name__ == "__main__":
    sys.exit(main())
