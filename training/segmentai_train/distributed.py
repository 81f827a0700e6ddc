"""DDP set-up for runs launched by ``torchrun`` (gloo on CPU, NCCL on CUDA); single process otherwise."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

__all__ = ["DistContext", "init_distributed", "shutdown_distributed"]


@dataclass
class DistContext:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: str = "cpu"  # where collective tensors live (NCCL needs CUDA tensors)

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """Only the main process writes files and prints progress."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()

    def mean(self, value: float) -> float:
        """The average of ``value`` over all processes (for logs)."""
        if not self.enabled:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(tensor)
        return float(tensor[0]) / self.world


def init_distributed(device_type: str) -> DistContext:
    """Join the process group that ``torchrun`` described in the environment (no-op without one)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    if not torch.distributed.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend=backend)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = f"cuda:{local_rank}" if device_type == "cuda" else "cpu"
    return DistContext(torch.distributed.get_rank(), torch.distributed.get_world_size(), local_rank, device)


def shutdown_distributed(context: DistContext) -> None:
    if context.enabled and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
