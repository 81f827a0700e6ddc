"""DDP under torchrun (gloo, 2 CPU processes) matches a single-process run with the same global batch.

Every patch is drawn from its own (seed, epoch, step, index) random state, so the two processes
together see exactly the single process's global batches; gradients are averaged over ranks.
Batch norm keeps the parent's statistics (``--bn frozen``) so that each sample's output does not
depend on which process holds its neighbours (with learnt statistics, DDP without SyncBatchNorm
normalises per process, a real and known difference; on CUDA SyncBatchNorm is used).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

from conftest import make_tiny_package
from segmentai_core.models.package import ModelPackage
from conftest import env, make_dataset

torch.set_num_threads(1)


def test_torchrun_two_processes_match_single_process(tmp_path):
    from segmentai_train.finetune import finetune

    source = make_tiny_package(tmp_path / "tiny")
    data = make_dataset(tmp_path / "data", count=2)
    settings = dict(epochs=1, iterations_per_epoch=3, warmup_iterations=1, batch_size=2, val_fraction=0,
                    bn_mode="frozen", patience=0, device="cpu", progress_bar=False)
    single = finetune(source, data, tmp_path / "single", **settings)

    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
               "segmentai_train.cli", "finetune", "--model", str(source.folder), "--data", str(data), "--out",
               str(tmp_path / "ddp"), "--epochs", "1", "--iterations", "3", "--warmup", "1", "--batch-size", "2",
               "--val-fraction", "0", "--bn", "frozen", "--patience", "0", "--device", "cpu", "--threads", "1",
               "--json-progress", "--no-progress-bar"]
    run = subprocess.run(command, capture_output=True, text=True, env={**env(), "OMP_NUM_THREADS": "1"}, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    events = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    starts = [e for e in events if e["event"] == "start"]
    assert len(starts) == 1 and starts[0]["world_size"] == 2  # only rank 0 reports and writes
    assert sorted(os.listdir(tmp_path / "ddp")) == ["checkpoint_latest.pt", "metrics.csv", "model",
                                                    "training_curve.png"]

    a = ModelPackage.open(single.package_dir).load_network().state_dict()
    b = ModelPackage.open(tmp_path / "ddp" / "model").load_network().state_dict()
    moved = max(float((a[k].float() - source.load_network().state_dict()[k].float()).abs().max()) for k in a)
    differ = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    assert moved > 1e-4  # training changed the weights...
    assert differ < 1e-5  # ...identically in both runs
