"""Recipe of the bundled default model ``brain-t1-extraction``: T1 MRI brain extraction.

Trains on permissively licensed data only: the ROBEX reference head (BSD-3-Clause), the ICBM152
2009a template (permissive copyright notice; skull-stripped, so it teaches the model to accept
already-stripped input) and procedural head phantoms generated here. Validation during training
uses held-out phantoms; the FSL MNI152 head (non-commercial licence) is used once, at the end,
as a test volume the model never saw.

    python -m segmentai_train.recipes.brain_extraction --out build/brain-t1-extraction --minutes 30
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np
import torch

from segmentai_core.inference.preprocess import prepare_input, prepare_label
from segmentai_core.phantoms import head_phantom
from segmentai_core.volume import Volume

from ..public_data import CASES, fetch_case
from ..sampling import CanonicalCase, PatchSampler, recalibrate_batch_norm
from ..trainer import TrainConfig, Trainer

MODEL_ID = "brain-t1-extraction"
PREPROCESSING = {
    "orientation": "RAS",
    "target_spacing": [2.0, 2.0, 2.0],
    "normalization": {"type": "percentile", "lower": 0.5, "upper": 99.5},
}
ARCHITECTURE = {
    "name": "UNet",
    # Batch norm (not instance norm): in eval mode the network is translation-equivariant and
    # independent of the window extent, so the engine may run the whole cropped head at once.
    "args": {"channels": [8, 16, 32, 64, 128], "strides": [2, 2, 2, 2], "num_res_units": 2, "norm": "batch"},
}
PATCH_XYZ = [80, 80, 80]


def read(path: Path) -> Volume:
    import SimpleITK as sitk

    return Volume.from_sitk(sitk.ReadImage(str(path)))


def canonical_case(name: str, image: Volume, mask: Volume, weight: float) -> CanonicalCase:
    prepared = prepare_input(image, PREPROCESSING)
    label = prepare_label(mask, prepared.canonical)
    return CanonicalCase(name, prepared.array, (label > 0).astype(np.uint8), weight)


def public_cases(leave_out: Sequence[str] = ()) -> List[CanonicalCase]:
    cases = []
    for name, case in CASES.items():
        if not case.for_training or name in leave_out:
            continue
        image_path, mask_path = fetch_case(name)
        image = read(image_path)
        if mask_path is not None:
            mask = read(mask_path)
        else:  # skull-stripped template: brain = T1/max > 0.2, nilearn's own rule
            mask = image.with_array((image.array > 0.2 * image.array.max()).astype(np.uint8))
        cases.append(canonical_case(name, image, mask, weight=4.0))
    return cases


def phantom_cases(seeds: range, weight: float = 1.0) -> List[CanonicalCase]:
    cases = []
    for seed in seeds:
        contrast = "skull_stripped" if seed % 5 == 0 else "T1"
        image, mask = head_phantom(seed=seed, contrast=contrast)
        cases.append(canonical_case(f"phantom-{seed}", image, mask, weight))
    return cases


def predict_canonical(network: torch.nn.Module, array: np.ndarray) -> np.ndarray:
    """Whole-volume forward pass, padded to a multiple of 16; returns the label map."""
    shape = np.array(array.shape)
    padded = (np.ceil(shape / 16) * 16).astype(int)
    x = np.zeros(padded, dtype=np.float32)
    x[: shape[0], : shape[1], : shape[2]] = array
    with torch.inference_mode():
        logits = network(torch.from_numpy(x)[None, None])[0]
    return logits.argmax(0).numpy()[: shape[0], : shape[1], : shape[2]].astype(np.uint8)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    denom = a.sum() + b.sum()
    return 1.0 if denom == 0 else float(2 * (a & b).sum() / denom)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--leave-out", nargs="*", default=[], metavar="CASE",
                        choices=[name for name, case in CASES.items() if case.for_training],
                        help="train without these public cases, to measure the recipe on them (the bundled "
                             "model is trained on all)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    from monai.losses import DiceCELoss
    from monai.networks.nets import UNet

    t0 = time.time()
    train = public_cases(args.leave_out) + phantom_cases(range(0, 40))
    validation = phantom_cases(range(1000, 1006))
    print(f"prepared {len(train)} training and {len(validation)} validation cases in {time.time() - t0:.0f} s",
          flush=True)

    network = UNet(spatial_dims=3, in_channels=1, out_channels=2, **ARCHITECTURE["args"])
    sampler = PatchSampler(train, PATCH_XYZ[::-1], batch_size=args.batch, seed=0)

    calibration = PatchSampler(train, PATCH_XYZ[::-1], batch_size=args.batch, seed=1)

    def validate(net: torch.nn.Module) -> Dict[str, float]:
        with torch.no_grad():
            recalibrate_batch_norm(net, calibration, 30)
        scores = [dice(predict_canonical(net, case.image), case.label) for case in validation]
        return {"val_dice_phantom": float(np.mean(scores))}

    config = TrainConfig(epochs=args.epochs, iterations_per_epoch=args.iterations, learning_rate=3e-3,
                         warmup_iterations=40, time_limit_s=args.minutes * 60, json_progress=True)
    trainer = Trainer(network, DiceCELoss(to_onehot_y=True, softmax=True), sampler, args.out, config,
                      validate_fn=validate)
    if args.resume and (args.out / "checkpoint_latest.pt").exists():
        trainer.load_checkpoint(args.out / "checkpoint_latest.pt")
    trainer.fit()
    recalibrate_batch_norm(network, calibration, 150)
    torch.save(network.state_dict(), args.out / "final_state_dict.pt")
    (args.out / "recipe.json").write_text(json.dumps({
        "id": MODEL_ID, "preprocessing": PREPROCESSING, "architecture": ARCHITECTURE, "patch_size": PATCH_XYZ,
        "training_cases": [c.name for c in train], "left_out": list(args.leave_out), "history": trainer.history,
    }, indent=1))
    print(f"done in {(time.time() - t0) / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
