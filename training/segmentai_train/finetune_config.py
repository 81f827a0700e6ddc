"""Every setting of a fine-tuning run (the CLI's ``finetune`` options map onto it by name)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

__all__ = ["FinetuneConfig"]


@dataclass
class FinetuneConfig:
    """Every setting of a fine-tuning run (the CLI's options map one to one)."""

    epochs: int = 20
    iterations_per_epoch: int = 25
    batch_size: int = 2  # global batch of one micro-step, split over DDP processes
    accumulate: int = 1  # micro-steps per optimiser step
    learning_rate: float = 1e-3
    encoder_lr_scale: float = 0.3
    freeze_encoder_epochs: int = 0
    optimizer: str = "adamw"  # or "sgd" (Nesterov, momentum 0.99)
    weight_decay: float = 1e-4
    warmup_iterations: int = 20
    schedule: str = "cosine"  # or "poly"
    grad_clip: float = 12.0
    val_fraction: float = 0.2
    folds: int = 0
    fold: int = 0
    patience: int = 10  # epochs without validation gain before stopping; 0 = never
    foreground_fraction: float = 0.67
    class_weights: Optional[List[float]] = None
    patch_size: Optional[List[int]] = None  # training patch (x, y, z); default: the manifest's inference patch
    bn_mode: str = "train"  # "train": batch statistics, recalibrated for eval; "frozen": the parent's statistics
    bn_batches: int = 8
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    json_progress: bool = False
    progress_bar: bool = True
    time_limit_s: Optional[float] = None
    version: Optional[str] = None
    model_id: Optional[str] = None
    source_fold: Optional[str] = None  # imported nnU-Net models: the fold to start from (default: the first)
    accept_worse: bool = False  # publish as the next version even when validation Dice fell
    plan_data: bool = True  # modality, normalisation, spacing and postprocessing from the cases (data_plan)
    holdout_fraction: float = 0.25  # 1-2 cases: validate on this share of each structure, held aside (0: in-sample)
    fill_budget: bool = False  # with time_limit_s: plan the epochs (and the schedule) to fill the budget
    max_epochs: int = 400  # the most epochs a budget-filling run plans
    parent_guard: bool = True  # the parent's own labels: no foreground beyond the corrections' reach from its answer
    calibrate_threshold: bool = True  # new classes: decision threshold chosen on the held-aside/held-out validation
    # Pull toward the parent's weights (L2-SP: weight x sum of squared differences), for runs that keep
    # the parent's own labels (its head kept); None: 0.01 there, 0 for new classes (their parent
    # features come from another task) and from scratch.
    parent_anchor: Optional[float] = None
    from_scratch: bool = False  # the parent's architecture and preprocessing, but none of its weights (a baseline)
