"""TotalSegmentator against SegmentAI on the same tiny weights (test and benchmark helper, not a test).

- :func:`place_tiny_model`: a tiny nnU-Net model trained by ``nnunetv2`` (``nnunet_tiny``) put where
  TotalSegmentator 2.x looks for the weights of ``total --fast`` (its home folder,
  ``TOTALSEG_HOME_DIR``): ``nnunet/results/Dataset297_TotalSegmentator_total_3mm_1559subj/
  nnUNetTrainer_4000epochs_NoMirroring__nnUNetPlans__3d_fullres/fold_0``, with TotalSegmentator's
  class names for its labels and a checkpoint that says what the release's say (that trainer, no
  mirroring). A ``config.json`` that turns usage statistics off is written beside it, so nothing
  leaves the machine; the weights being present, TotalSegmentator downloads nothing.
- :func:`release_zip`: that folder zipped as the release archive, for ``segmentai models install
  total_fast --from-file``.
- ``python totalseg_release.py totalseg|segmentai ...``: one run of either tool in this process,
  printing a JSON line with its time and the process's own peak RSS (``VmHWM``; its largest child's
  ``ru_maxrss`` apart, which counts what the child shared with it at the fork);
  :func:`run_tool` starts it in a fresh subprocess.

TotalSegmentator is not a dependency of SegmentAI: ``scripts/test.sh`` installs it without its
dependencies into ``.venv/totalseg-site`` (:func:`totalseg_site` finds it; nothing else reads it).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
TS_VERSION = "2.18.0"
TS_TASK_FOLDER = "Dataset297_TotalSegmentator_total_3mm_1559subj"  # task "total", fast (3 mm): id 297
TS_TRAINER = "nnUNetTrainer_4000epochs_NoMirroring"
TS_TRAINER_FOLDER = f"{TS_TRAINER}__nnUNetPlans__3d_fullres"
# TotalSegmentator's names of labels 1 and 2 of "total" (its map_to_binary.class_map["total"]); the
# tiny model's two labels take them, so both tools must call them so.
CLASS_NAMES = {1: "spleen", 2: "kidney_right"}


def totalseg_site() -> Optional[Path]:
    """The folder holding the ``totalsegmentator`` package (None: not installed).

    ``SEGMENTAI_TOTALSEG_SITE`` names it; else ``.venv/totalseg-site`` (scripts/test.sh); else an
    installed package of this Python.
    """
    import importlib.util

    for candidate in (os.environ.get("SEGMENTAI_TOTALSEG_SITE"), str(ROOT / ".venv" / "totalseg-site")):
        if candidate and (Path(candidate) / "totalsegmentator" / "python_api.py").is_file():
            return Path(candidate)
    spec = importlib.util.find_spec("totalsegmentator")
    return Path(spec.origin).parent.parent if spec and spec.origin else None


def place_tiny_model(model_folder: Path, home: Path) -> Path:
    """Copy fold 0 of the nnU-Net ``model_folder`` into TotalSegmentator's layout under ``home``.

    Returns the trainer folder. Test code rewriting its own checkpoint: ``weights_only=False`` is safe.
    """
    import torch

    target = home / "nnunet" / "results" / TS_TASK_FOLDER / TS_TRAINER_FOLDER
    (target / "fold_0").mkdir(parents=True)
    shutil.copy2(model_folder / "plans.json", target / "plans.json")
    dataset = json.loads((model_folder / "dataset.json").read_text(encoding="utf-8"))
    old = {v: k for k, v in dataset["labels"].items()}
    dataset["labels"] = {"background": 0, **{CLASS_NAMES[v]: v for v in sorted(old) if v in CLASS_NAMES}}
    (target / "dataset.json").write_text(json.dumps(dataset, indent=2))
    checkpoint = torch.load(model_folder / "fold_0" / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    # As in the release: the NoMirroring trainer, which stores no mirror axes (nnU-Net then mirrors nothing).
    checkpoint["trainer_name"] = TS_TRAINER
    checkpoint["inference_allowed_mirroring_axes"] = None
    torch.save(checkpoint, target / "fold_0" / "checkpoint_final.pth")
    write_offline_config(home, "totalseg_segmentai_test")
    return target


def write_offline_config(home: Path, totalseg_id: str) -> None:
    """TotalSegmentator's ``config.json`` in ``home`` with usage statistics off (nothing leaves the machine)."""
    config = {"totalseg_id": totalseg_id, "send_usage_stats": False, "prediction_counter": 0,
              "statistics_disclaimer_shown": True}
    (home / "config.json").write_text(json.dumps(config, indent=4))


def release_zip(home: Path, archive: Path) -> Path:
    """``Dataset297_...zip`` as the release holds it: the task folder at the top."""
    folder = home / "nnunet" / "results" / TS_TASK_FOLDER
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as out:
        for path in sorted(folder.rglob("*")):
            out.write(path, path.relative_to(folder.parent).as_posix())
    return archive


def write_ct(path: Path, shape_kji: Sequence[int], spacing_xyz: Sequence[float], seed: int = 7,
             direction: Optional[Sequence[float]] = None, origin=(-30.0, 12.0, 40.0)) -> Path:
    """A CT-like phantom (``nnunet_tiny.phantom``) as NIfTI. Without ``direction`` the file is stored
    in RAS order (nibabel's canonical form, which TotalSegmentator leaves as it is); else with that
    LPS direction matrix (row-major 3×3, as SimpleITK takes it)."""
    import SimpleITK as sitk

    sys.path.insert(0, str(Path(__file__).parent))
    import nnunet_tiny

    image, _ = nnunet_tiny.phantom(tuple(shape_kji), seed=seed, spacing_xyz=tuple(spacing_xyz))
    itk = sitk.GetImageFromArray(image)
    itk.SetSpacing(tuple(float(s) for s in spacing_xyz))
    # RAS storage in LPS terms: i runs to -x (right to left is +x in LPS), j to -y.
    itk.SetDirection(tuple(direction) if direction is not None else (-1, 0, 0, 0, -1, 0, 0, 0, 1))
    itk.SetOrigin(tuple(float(o) for o in origin))
    sitk.WriteImage(itk, str(path))
    return path


def tool_env(home: Path, segmentai_home: Optional[Path] = None) -> Dict[str, str]:
    """The environment of a tool's subprocess: TotalSegmentator's home and site, SegmentAI's home, no
    nnU-Net folders of the caller (TotalSegmentator sets its own)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("nnUNet_")}
    env["TOTALSEG_HOME_DIR"] = str(home)
    site = totalseg_site()
    paths = [str(ROOT / "SegmentAI")] + ([str(site)] if site else []) + [env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    if segmentai_home is not None:
        env["SEGMENTAI_HOME"] = str(segmentai_home)
    return env


def run_tool(tool: str, image: Path, output: Path, env: Dict[str, str], timeout_s: float = 300.0) -> Dict[str, float]:
    """Run ``tool`` (``totalseg``, ``totalseg-default``, ``totalseg-ml``, ``segmentai`` or
    ``segmentai-bfloat16``) on ``image`` in a fresh subprocess; its JSON line plus ``process_s``, the
    subprocess's whole wall time (Python, torch and the tool imported).

    Threads: TotalSegmentator on CPU sets torch to one thread per logical CPU; SegmentAI keeps
    torch's default (one per physical core). Neither is changed here: each runs as its users run it.
    """
    command = [sys.executable, str(Path(__file__).resolve()), tool, str(image), str(output)]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout_s)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{tool} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    report["process_s"] = elapsed
    return report


def read_labels(path: Path) -> Dict[str, np.ndarray]:
    """Class name → boolean mask (array order k, j, i) of a SegmentAI ``.seg.nrrd`` or a folder of
    TotalSegmentator's per-class files (``<class>.nii.gz``); empty classes are left out."""
    import SimpleITK as sitk

    if path.is_dir():
        masks = {p.name[:-len(".nii.gz")]: sitk.GetArrayFromImage(sitk.ReadImage(str(p))) > 0
                 for p in sorted(path.glob("*.nii.gz"))}
        return {name: mask for name, mask in masks.items() if mask.any()}
    from segmentai_core.io import read_segmentation

    labelmap, labels = read_segmentation(path)[:2]
    return {label.name: labelmap.array == label.value for label in labels if (labelmap.array == label.value).any()}


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def _register_trainer() -> None:
    """Hand TotalSegmentator's trainer lookup the release's trainer class directly.

    nnU-Net finds a checkpoint's trainer by importing every trainer module until one defines it,
    and some (Primus) import timm and torchvision, which fails where torchvision does not match the
    installed torch (the CPU torch beside PyPI's torchvision, as in this project's environment).
    TotalSegmentator's own table of custom trainers is consulted first, so the class goes there;
    it is nnU-Net's class of that name, the one the walk would find.
    """
    from totalsegmentator.config import setup_nnunet

    setup_nnunet()  # nnU-Net reads its folders when first imported: TotalSegmentator sets them first
    import totalsegmentator.nnunet as ts_nnunet
    from nnunetv2.training.nnUNetTrainer.variants.training_length import nnUNetTrainer_Xepochs_NoMirroring as lengths

    ts_nnunet.custom_trainers.setdefault(TS_TRAINER, getattr(lengths, TS_TRAINER))


def _run_totalseg(image: str, output: str, mode: str = "test") -> None:
    """TotalSegmentator's ``total --fast`` on CPU. ``mode``: ``test`` one file per class written by one
    process; ``default`` its defaults (one file per class, six saving processes); ``ml`` its ``--ml``
    option (one multi-label file)."""
    from totalsegmentator.python_api import totalsegmentator

    _register_trainer()
    options = {"test": {"nr_thr_resamp": 1, "nr_thr_saving": 1}, "default": {}, "ml": {"ml": True}}[mode]
    totalsegmentator(image, output, task="total", fast=True, device="cpu", quiet=True, **options)


def _run_segmentai(image: str, output: str, precision: str = "float32") -> Dict[str, float]:
    """``segmentai segment`` with ``--timings``; returns its per-stage seconds (read … write)."""
    import contextlib
    import io

    from segmentai_core.cli.main import main

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["segment", image, "-o", output, "--model", "total_fast", "--device", "cpu", "--quiet",
                     "--timings", "--precision", precision])
    if code != 0:
        raise SystemExit(code)
    return json.loads(printed.getvalue().strip().splitlines()[-1])["timings_s"]


def _peak_mib(who: int) -> float:
    """Peak RSS in MiB: this process's own (bench/machine.py's VmHWM: ``ru_maxrss`` of a process
    survives fork and exec, so it would start at the spawning benchmark's size), or the largest child's."""
    if who == resource.RUSAGE_SELF:
        sys.path.insert(0, str(ROOT / "bench"))
        from machine import peak_rss_mib

        return peak_rss_mib()
    return resource.getrusage(who).ru_maxrss / 1024.0  # KiB on Linux


if __name__ == "__main__":  # python totalseg_release.py totalseg[-default|-ml]|segmentai IMAGE OUTPUT
    tool, image_path, output_path = sys.argv[1:4]
    start = time.perf_counter()
    runners = {"totalseg": _run_totalseg, "segmentai": _run_segmentai,
               "totalseg-default": lambda i, o: _run_totalseg(i, o, "default"),
               "totalseg-ml": lambda i, o: _run_totalseg(i, o, "ml"),
               "segmentai-bfloat16": lambda i, o: _run_segmentai(i, o, "bfloat16")}
    stages = runners[tool](image_path, output_path)
    seconds = time.perf_counter() - start
    # The largest child (nnU-Net's preprocessing/export workers) apart from this process's own peak.
    print(json.dumps({"tool": tool, "run_s": seconds, "peak_rss_mib": _peak_mib(resource.RUSAGE_SELF),
                      "children_peak_rss_mib": _peak_mib(resource.RUSAGE_CHILDREN),
                      **({"stages_s": stages} if stages else {})}))
