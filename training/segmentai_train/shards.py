"""A patch stream whose every sample is fixed by (seed, epoch, step, index): shardable and resumable.

Sample ``b`` of global batch ``step`` is drawn with its own random state, so rank ``r`` of ``W``
processes can draw exactly its share of the global batch (what ``DistributedSampler`` does for a
map-style dataset), a resumed run draws the same patches as an uninterrupted one, and a
``W``-process run sees the same global batches as a single process.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from .sampling import CanonicalCase, PatchSampler

__all__ = ["ShardedPatchSampler"]


class ShardedPatchSampler(PatchSampler):
    """Yields this rank's part ``(global_batch / world)`` of each global batch, forever."""

    def __init__(self, cases: List[CanonicalCase], patch_kji: Sequence[int], global_batch: int = 2,
                 rank: int = 0, world: int = 1, foreground_fraction: float = 0.67, seed: int = 0,
                 modality: str = "MR", flip_axis: Optional[int] = 2) -> None:
        if global_batch % world:
            raise ValueError(f"the global batch ({global_batch}) must divide among {world} processes")
        super().__init__(cases, patch_kji, batch_size=global_batch // world,
                         foreground_fraction=foreground_fraction, seed=seed, modality=modality,
                         flip_axis=flip_axis)
        self.seed, self.rank, self.world, self.global_batch = seed, rank, world, global_batch
        self.epoch, self.step = 0, 0

    def set_epoch(self, epoch: int) -> None:
        """Restart the stream of ``epoch`` (as ``DistributedSampler.set_epoch``)."""
        self.epoch, self.step = epoch, 0

    def sample(self, key: Sequence[int]) -> Dict[str, np.ndarray]:
        """The augmented patch for ``key``; identical in every process and every run."""
        state = np.random.SeedSequence([self.seed, *key]).generate_state(2)
        self.rng = np.random.default_rng(int(state[0]))
        self.augment.set_random_state(seed=int(state[1]))
        index = int(self.rng.choice(len(self.cases), p=self.probabilities))
        return self.augment(self._crop(index))

    def __next__(self) -> Dict[str, torch.Tensor]:
        local = self.global_batch // self.world
        items = [self.sample((self.epoch, self.step, b)) for b in range(self.rank * local, (self.rank + 1) * local)]
        self.step += 1
        return {key: torch.stack([torch.as_tensor(np.asarray(item[key])) for item in items])
                for key in ("image", "label")}
