"""Recipe of the shipped interactive model ``interactive-unet``: class-agnostic click/scribble refinement.

Trained by simulated interaction (empty or degraded previous mask, clicks at the largest error
region, some rounds with the network in the loop) on permissively licensed data only: shape
phantoms generated here and structures of the ICBM152 2009a template and the ROBEX head (see
``segmentai_train.interactive.real_data``). Validation: simulated clicks on held-out phantoms.

    python -m segmentai_train.recipes.interactive --out build/interactive --minutes 27 \
        --package Resources/Models/interactive-unet
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch
from segmentai_core.metrics import dice
from segmentai_core.phantoms import shapes_phantom

from ..interactive.clicker import next_click
from ..interactive.settings import ARCHITECTURE, INTERACTIVE, MODEL_ID, PATCH, SPACING_MM  # noqa: F401
from ..interactive.samples import NORMALIZATION, Click, InteractiveSampler, ShapePool, encode
from ..sampling import recalibrate_batch_norm
from ..trainer import TrainConfig, Trainer

def validation_cases(count: int = 6) -> List[tuple]:
    cases = []
    for seed in range(900_000, 900_000 + count):
        image, labels = shapes_phantom((PATCH,) * 3, seed=seed)
        values, sizes = np.unique(labels.array[labels.array > 0], return_counts=True)
        from segmentai_core.inference.normalization import normalize

        cases.append((normalize(image.array, NORMALIZATION), labels.array == values[np.argmax(sizes)]))
    return cases


def click_curve(network: torch.nn.Module, image: np.ndarray, target: np.ndarray, clicks: int) -> List[float]:
    """Dice after each of ``clicks`` simulated clicks from an empty mask, network on the patch."""
    prediction = np.zeros_like(target)
    history: List[Click] = []
    curve = []
    for _ in range(clicks):
        click = next_click(prediction, target)
        if click is None:
            curve.append(1.0)
            continue
        history.append(Click(click[0][None].astype(float), click[1]))
        with torch.inference_mode():
            logits = network(torch.from_numpy(encode(image, prediction, history))[None])
        prediction = logits.argmax(1)[0].numpy() > 0
        curve.append(dice(prediction, target))
    return curve


class TimeBudgetTrainer(Trainer):
    """The shared trainer with one hook changed: the cosine schedule runs over the wall-time budget,
    so the learning rate has decayed when the time limit stops training, whatever the machine's speed."""

    def learning_rate(self) -> float:
        if not self.config.time_limit_s:
            return super().learning_rate()
        if self.step < self.config.warmup_iterations:
            return self.config.learning_rate * (self.step + 1) / self.config.warmup_iterations
        fraction = min(1.0, (time.time() - self._t0) / self.config.time_limit_s)
        return self.config.learning_rate * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * fraction)))


def initialise_from(network: torch.nn.Module, path: Path) -> int:
    """Copy a one-channel U-Net's weights; the extra input channels (mask, guidance) start at zero.

    Layers whose input-channel count differs get the pretrained weights in channel 0 and zeros
    elsewhere, so the network starts as the pretrained one and learns to use the prompts.
    """
    pretrained = torch.load(path, map_location="cpu", weights_only=True)
    state = network.state_dict()
    copied = 0
    for key, value in pretrained.items():
        if key not in state:
            continue
        target = state[key]
        if value.shape == target.shape:
            state[key] = value.clone()
        elif value.ndim == target.ndim and value.shape[0] == target.shape[0] and value.shape[2:] == target.shape[2:]:
            widened = torch.zeros_like(target)
            widened[:, : value.shape[1]] = value
            state[key] = widened
        else:
            continue
        copied += 1
    network.load_state_dict(state)
    return copied


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=27)
    parser.add_argument("--epochs", type=int, default=1000, help="upper bound; the time budget ends training")
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pool", type=int, default=200, help="shape phantoms kept in memory")
    parser.add_argument("--no-real", action="store_true", help="phantoms only (quick checks)")
    parser.add_argument("--real-fraction", type=float, default=0.55, help="share of samples from real volumes")
    parser.add_argument("--supervoxel-weight", type=int, default=5,
                        help="copies of each supervoxel volume in the real list (the 7 structures count once)")
    parser.add_argument("--box-probability", type=float, default=0.15,
                        help="share of fresh objects prompted by a 2D box (centre click + negative outline)")
    parser.add_argument("--thick-slice-probability", type=float, default=0.3,
                        help="share of samples whose image gets simulated thick slices (anisotropic clinical scans)")
    parser.add_argument("--init", type=Path, default=None,
                        help="state dict (.pt) to start from: the core's brain U-Net (one input channel; the "
                             "extra channels start at zero) or an earlier interactive model")
    parser.add_argument("--lr", type=float, default=3e-3,
                        help="peak learning rate (lower, e.g. 1e-3, to continue from an earlier interactive model)")
    parser.add_argument("--package", type=Path, default=None, help="write the model package here at the end")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    from monai.losses import DiceCELoss
    from monai.networks.nets import UNet

    t0 = time.time()
    real = []
    if not args.no_real:
        from ..interactive.real_data import supervoxel_volumes, training_structures

        structures = training_structures()
        supervoxels = supervoxel_volumes()
        # Listed several times so that about 3/5 of real samples are supervoxel objects (varied sizes and
        # tissues) and 2/5 the few large labelled structures.
        real = structures + supervoxels * args.supervoxel_weight
    shapes = ShapePool(PATCH, args.pool, seed=0)
    validation = validation_cases()
    print(f"prepared {len(real)} real structures and {args.pool} phantoms in {time.time() - t0:.0f} s", flush=True)

    network = UNet(spatial_dims=3, in_channels=4, out_channels=2, **ARCHITECTURE["args"])
    if args.init is not None:
        print(f"initialised from {args.init}: {initialise_from(network, args.init)} tensors", flush=True)
    sampler = InteractiveSampler(real, shapes, PATCH, args.batch, SPACING_MM, real_fraction=args.real_fraction,
                                 network=network, box_probability=args.box_probability,
                                 thick_slice_probability=args.thick_slice_probability,
                                 loop_probability=0.3, seed=0)
    calibration = InteractiveSampler(real, shapes, PATCH, args.batch, SPACING_MM, real_fraction=args.real_fraction,
                                     network=None,
                                     seed=1)

    def validate(net: torch.nn.Module) -> Dict[str, float]:
        shapes.renew(6, sampler.rng)
        with torch.no_grad():
            recalibrate_batch_norm(net, calibration, 10)
        curves = np.array([click_curve(net, image, target, 3) for image, target in validation])
        return {"val_dice_1click": float(curves[:, 0].mean()), "val_dice_3clicks": float(curves[:, 2].mean())}

    config = TrainConfig(epochs=args.epochs, iterations_per_epoch=args.iterations, learning_rate=args.lr,
                         warmup_iterations=50, time_limit_s=args.minutes * 60, json_progress=True)
    trainer = TimeBudgetTrainer(network, DiceCELoss(to_onehot_y=True, softmax=True), sampler, args.out, config,
                      validate_fn=validate)
    trainer.fit()
    recalibrate_batch_norm(network, calibration, 100)
    network.eval()
    torch.save(network.state_dict(), args.out / "final_state_dict.pt")
    curves = np.array([click_curve(network, image, target, 5) for image, target in validation])
    final = {f"val_dice_{n + 1}": float(curves[:, n].mean()) for n in range(5)}
    (args.out / "recipe.json").write_text(json.dumps({
        "id": MODEL_ID, "spacing_mm": SPACING_MM, "patch": PATCH, "architecture": ARCHITECTURE,
        "interactive": INTERACTIVE, "real_structures": sorted({s.name for s in real}),
        "phantoms_generated": shapes.next_seed,
        "history": trainer.history, "final_validation": final, "minutes": (time.time() - t0) / 60,
    }, indent=1))
    print(json.dumps({"event": "final", **final}), flush=True)
    if args.package is not None:
        from ..interactive.package import write_interactive_package

        write_interactive_package(args.package, network.state_dict(), real_names=sorted({s.name for s in real}),
                                  phantoms=shapes.next_seed)
        print(f"wrote {args.package}", flush=True)
    print(f"done in {(time.time() - t0) / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
