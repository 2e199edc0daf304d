"""Training speed of the default recipe on this machine: steps/s, seconds per epoch, parameter count.

    python benchmarks/bench_train.py [--steps 20] [--threads N]

Times real optimiser steps (features + forward + backward + AdamW) of pretraining and of fine-tuning at the
default batch (16 clips x 1 s crops) on synthetic batches, and projects the default recipe of
examples/train_default.sh (1500 pretraining + 1200 fine-tuning steps) from the measured rates.
"""

from __future__ import annotations

import argparse
import time

import torch

from binlearn.features import FeatureConfig, parse_kinds, target_dim
from binlearn.model import DistillModel, DoAModel, ModelConfig, count_parameters
from binlearn.train import DistillTask, DoATask, TrainConfig

PRETRAIN_STEPS, FINETUNE_STEPS, TRAIN_CLIPS = 1500, 1200, 960   # examples/train_default.sh (1200 clips, 80 % train)


def steps_per_second(task, model, batch: int, seg: int, steps: int, with_labels: bool) -> float:
    g = torch.Generator().manual_seed(0)
    x = 0.05 * torch.randn(batch, 2, seg, generator=g)
    clean = 0.05 * torch.randn(batch, 2, seg, generator=g)
    az = torch.rand(batch, generator=g) * 180 - 90 if with_labels else None
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step():
        loss, _ = task.loss_fn(model, x, clean, az)
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(3):
        step()  # warm-up (allocator, kernels)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    tc = TrainConfig()
    fcfg, kinds = FeatureConfig(), parse_kinds(tc.targets)
    seg = int(tc.segment_s * fcfg.fs)
    torch.manual_seed(0)
    pre = DistillModel(ModelConfig(target_dim=target_dim(fcfg, kinds)))
    doa = DoAModel(ModelConfig())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {tc.batch_size} x {tc.segment_s:g} s")
    print(f"parameters: encoder {count_parameters(doa.encoder):,}, DoA model {count_parameters(doa):,}, "
          f"pretraining model {count_parameters(pre):,}")
    r_pre = steps_per_second(DistillTask(fcfg, kinds, tc.loss), pre, tc.batch_size, seg, a.steps, False)
    r_ft = steps_per_second(DoATask(fcfg, ModelConfig()), doa, tc.batch_size, seg, a.steps, True)
    spe = -(-TRAIN_CLIPS // tc.batch_size)
    print(f"pretrain: {r_pre:.2f} steps/s, {spe / r_pre:.1f} s/epoch ({spe} steps of {TRAIN_CLIPS} train clips)")
    print(f"finetune: {r_ft:.2f} steps/s, {spe / r_ft:.1f} s/epoch")
    total = PRETRAIN_STEPS / r_pre + FINETUNE_STEPS / r_ft
    print(f"default recipe ({PRETRAIN_STEPS} + {FINETUNE_STEPS} steps, excluding per-epoch validation): "
          f"{total / 60:.1f} min (target <= 20 min)")


if __name__ == "__main__":
    main()
