"""Training: label-free pretraining by feature distillation, and DoA fine-tuning, sharing one loop.

pretrain:  augmented (reverberant + noise at random SNR, gain, tilt) waveform -> input features -> encoder ->
           predictor -> L1 to the spatial features (GCC-PHAT / IPD / ILD) of the clean direct-path signal.
finetune:  same input -> encoder (random init or copied from a pretrained checkpoint) -> DoA head ->
           soft-label cross-entropy over the azimuth grid, on frames where the clean signal is active.

Both run AdamW with warm-up + cosine decay, gradient clipping, validation every epoch (on a fixed,
seeded remix of the validation split), best-on-validation checkpointing, early stopping, ``--resume`` and
multi-GPU through torchrun (DistributedDataParallel) when launched that way.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from .checkpoint import CheckpointError, config_from_dict, load_checkpoint, save_checkpoint
from .data import Clips, augment, label_subset, load_split, random_crop
from .features import FeatureConfig, active_frames, input_features, parse_kinds, target_dim, target_features
from .model import (DistillModel, DoAModel, ModelConfig, azimuth_grid, count_parameters, frames_to_azimuth,
                    soft_labels)
from .progress import Progress

FS = 16000


class TrainingError(RuntimeError):
    """Training cannot continue (diverged, nothing to resume, ...): reported as one line."""


@dataclass
class TrainConfig:
    """Optimisation settings shared by ``pretrain`` and ``finetune`` (saved in every checkpoint)."""

    epochs: int = 30
    steps: int = 0                 # >0: total optimiser steps, overrides epochs
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup_frac: float = 0.05
    grad_clip: float = 5.0
    segment_s: float = 1.0         # random training crop; validation uses whole clips
    patience: int = 8              # epochs (of at least 25 steps) without validation improvement before stopping
    seed: int = 0
    snr_range: tuple[float, float] = (-10.0, 20.0)
    # pretraining
    targets: str = "gcc+ipd+ild"
    loss: str = "l1"
    # fine-tuning
    label_fraction: float = 1.0
    freeze_encoder: bool = False
    inactive_weight: float = 1.0   # weight of the uniform target on frames without the talker (0: ignore them)
    init: str = ""


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available; asking for CUDA without one is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise TrainingError(f"unknown device {name!r} (choose auto, cpu or cuda)")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TrainingError("--device cuda asked for, but no CUDA GPU is available")
    return torch.device(name)


# ---------------------------------------------------------------------------------------------------------------
# Distributed helpers (active only under torchrun)


def _dist_env() -> tuple[int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def _setup_distributed(device: torch.device) -> tuple[int, int, torch.device]:
    rank, world = _dist_env()
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(device)
    return rank, world, device


# ---------------------------------------------------------------------------------------------------------------
# Tasks: how a batch becomes a loss


class DistillTask:
    """Predict clean spatial features from augmented input; loss on frames where the clean talker is active."""

    kind = "distill"

    def __init__(self, fcfg: FeatureConfig, kinds: tuple[str, ...], loss: str):
        if loss not in ("l1", "mse"):
            raise TrainingError(f"unknown loss {loss!r} (choose l1 or mse)")
        self.fcfg, self.kinds, self.loss = fcfg, kinds, loss

    def loss_fn(self, model, x: torch.Tensor, clean: torch.Tensor, az) -> tuple[torch.Tensor, dict]:
        target = target_features(clean, self.fcfg, self.kinds)            # (B, T, D)
        mask = active_frames(clean, self.fcfg).float()                    # (B, T)
        pred = model(input_features(x, self.fcfg)).float()                # (B, T, D)
        err = (pred - target).abs() if self.loss == "l1" else (pred - target).pow(2)
        loss = (err.mean(-1) * mask).sum() / mask.sum().clamp_min(1.0)
        return loss, {}


class DoATask:
    """Per-frame soft-label cross-entropy over the azimuth grid.

    Frames where the clean talker is active get a Gaussian target around the true azimuth. Other frames (speech
    pauses: only noise, interferers and reverberation) get a uniform target with weight ``inactive_weight``, so
    the model learns to say "no direction here" instead of confidently pointing at the noise -- which is what
    lets averaging frame posteriors over a whole utterance work at low SNR. ``inactive_weight=0`` trains on
    active frames only.
    """

    kind = "doa"

    def __init__(self, fcfg: FeatureConfig, mcfg: ModelConfig, inactive_weight: float = 1.0):
        self.fcfg, self.mcfg, self.inactive_weight = fcfg, mcfg, inactive_weight

    def loss_fn(self, model, x, clean, az) -> tuple[torch.Tensor, dict]:
        logits = model(input_features(x, self.fcfg)).float()              # (B, T, K)
        active = active_frames(clean, self.fcfg).float()                  # (B, T)
        target = soft_labels(az, self.mcfg).to(logits.device)             # (B, K)
        logp = F.log_softmax(logits, -1)
        ce_active = -(target[:, None, :] * logp).sum(-1)                  # (B, T)
        ce_uniform = -logp.mean(-1)                                       # (B, T)
        w = active + self.inactive_weight * (1 - active)
        loss = ((active * ce_active + self.inactive_weight * (1 - active) * ce_uniform).sum()
                / w.sum().clamp_min(1.0))
        with torch.no_grad():
            # Utterance estimate as at inference: average frame posteriors over all frames.
            p = F.softmax(logits, -1).mean(1)
            est = frames_to_azimuth(torch.log(p.clamp_min(1e-8)), self.mcfg)
            err = (est - az).abs()
            if self.mcfg.full_circle:
                err = torch.minimum(err, 360 - err)
        return loss, {"mae_deg": float(err.mean())}


# ---------------------------------------------------------------------------------------------------------------
# The shared loop


def _lr_lambda(total: int, warmup_frac: float) -> Callable[[int], float]:
    warm = max(1, int(total * warmup_frac))

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, total - warm))
        return 0.5 * (1 + math.cos(math.pi * progress))

    return f


def _fixed_val_inputs(val: Clips, snr_range, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(10_000 + seed)
    return augment(val.reverb, val.noise, snr_range, g)


def fit(task, model: torch.nn.Module, train: Clips, val: Clips, tcfg: TrainConfig, out: Path,
        payload: Callable[[torch.nn.Module], dict], *, device: str = "auto", resume: bool = False,
        progress: bool = True, log: Callable[[str], None] = print) -> dict:
    """Train ``model`` on ``task`` and keep the best-on-validation weights in ``out``.

    ``payload(model)`` returns the checkpoint contents (configs, state dict); training summary is added here.
    A sidecar ``out + '.state'`` holds the last optimiser state during training for ``--resume`` and is
    removed when the run completes. Returns the training summary.
    """
    dev = resolve_device(device)
    rank, world, dev = _setup_distributed(dev)
    torch.manual_seed(tcfg.seed + rank)
    gen = torch.Generator().manual_seed(tcfg.seed * 1000 + rank)
    model.to(dev)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    steps_per_epoch = max(1, math.ceil(len(train) / (tcfg.batch_size * world)))
    total = tcfg.steps if tcfg.steps > 0 else tcfg.epochs * steps_per_epoch
    epochs = math.ceil(total / steps_per_epoch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(total, tcfg.warmup_frac))
    use_amp = dev.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[dev] if dev.type == "cuda" else None)

    seg = int(round(tcfg.segment_s * FS))
    val_x = _fixed_val_inputs(val, tcfg.snr_range, tcfg.seed)
    state_path = Path(str(out) + ".state")
    step, start_epoch, best, bad_epochs, history = 0, 0, math.inf, 0, []
    if resume:
        if not state_path.is_file():
            raise TrainingError(f"nothing to resume: {state_path} not found (the run finished or never started)")
        st = load_checkpoint(state_path)
        model.load_state_dict(st["state_dict"])
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
        gen.set_state(st["generator"])
        torch.set_rng_state(st["torch_rng"])
        step, start_epoch, best, bad_epochs, history = (st["step"], st["epoch"], st["best"], st["bad_epochs"],
                                                        st["history"])
        log(f"resuming at epoch {start_epoch}, step {step}")

    def evaluate_val() -> tuple[float, dict]:
        model.eval()
        losses, extras = [], {}
        with torch.no_grad():
            for i in range(0, len(val), 32):
                sl = slice(i, i + 32)
                az = None if val.azimuth is None else val.azimuth[sl].to(dev)
                l, ex = task.loss_fn(model, val_x[sl].to(dev), val.clean[sl].to(dev), az)
                n = val_x[sl].shape[0]
                losses.append(float(l.detach()) * n)
                for k, v in ex.items():
                    extras[k] = extras.get(k, 0.0) + v * n
        model.train()
        return sum(losses) / len(val), {k: v / len(val) for k, v in extras.items()}

    bar = Progress(total, task.kind if task.kind == "doa" else "pretrain", enabled=progress and rank == 0)
    t0 = time.perf_counter()
    model.train()
    stopped = "completed"
    # Validate every epoch, but not more often than every 25 steps: with a small label fraction an epoch is a
    # handful of steps and validating after each would cost more than training.
    val_every = max(steps_per_epoch, 25)
    last_val_step = step
    for epoch in range(start_epoch, epochs):
        perm = torch.randperm(len(train), generator=gen)
        running, n_batches = 0.0, 0
        for b in range(steps_per_epoch):
            if step >= total:
                break
            idx = perm[(b * world + rank) * tcfg.batch_size:(b * world + rank + 1) * tcfg.batch_size]
            if len(idx) == 0:
                idx = perm[:tcfg.batch_size]
            reverb, noise, clean = random_crop([train.reverb[idx], train.noise[idx], train.clean[idx]], seg, gen)
            x = augment(reverb, noise, tcfg.snr_range, gen).to(dev)
            az = None if train.azimuth is None else train.azimuth[idx].to(dev)
            with torch.autocast(dev.type, dtype=amp_dtype, enabled=use_amp):
                loss, _ = task.loss_fn(net, x, clean.to(dev), az)
            if not torch.isfinite(loss):
                kept = f"last good checkpoint kept at {out}" if out.is_file() else "no checkpoint was written yet"
                raise TrainingError(f"loss became {loss.item()} at step {step}; stopping ({kept})")
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(params, tcfg.grad_clip)
            scaler.step(opt)
            scaler.update()
            sched.step()
            step += 1
            running += float(loss.detach())
            n_batches += 1
            bar.update(step, unit="steps", loss=running / n_batches, epoch=epoch + 1)
        if step - last_val_step < val_every and step < total:
            continue
        steps_this_epoch, last_val_step = step - last_val_step, step
        val_loss, extras = evaluate_val() if rank == 0 else (0.0, {})
        if not math.isfinite(val_loss):
            kept = f"last good checkpoint kept at {out}" if out.is_file() else "no checkpoint was written yet"
            raise TrainingError(f"validation loss became {val_loss} after epoch {epoch + 1}; stopping ({kept})")
        rec = {"epoch": epoch + 1, "step": step, "train_loss": running / max(n_batches, 1), "val_loss": val_loss,
               **{f"val_{k}": v for k, v in extras.items()}, "elapsed_s": round(time.perf_counter() - t0, 2)}
        history.append(rec)
        if rank == 0:
            if val_loss < best:
                best, bad_epochs = val_loss, 0
                summary = _summary(history, best, step, total, "running", t0, model)
                save_checkpoint(out, {**payload(model), "train_config": dataclasses.asdict(tcfg), "summary": summary})
            else:
                bad_epochs += steps_this_epoch
            save_checkpoint(state_path, {**payload(model), "optimizer": opt.state_dict(),
                                         "scheduler": sched.state_dict(), "generator": gen.get_state(),
                                         "torch_rng": torch.get_rng_state(), "step": step, "epoch": epoch + 1,
                                         "best": best, "bad_epochs": bad_epochs, "history": history})
        if world > 1:
            import torch.distributed as dist

            flag = torch.tensor([bad_epochs], device=dev)
            dist.broadcast(flag, 0)
            bad_epochs = int(flag.item())
        # Patience is in epochs, but an epoch counts as at least 25 steps, so that a small label fraction does
        # not stop after a few steps and hand that run a smaller budget than the others.
        if bad_epochs >= tcfg.patience * val_every:
            stopped = f"early stop after {bad_epochs} steps without validation improvement"
            break
        if step >= total:
            break
    bar.close()
    summary = _summary(history, best, step, total, stopped, t0, model)
    if rank == 0:
        # Rewrite the best checkpoint with the final summary (weights unchanged).
        ck = load_checkpoint(out)
        ck["summary"] = summary
        ck.pop("format", None)
        ck.pop("version", None)
        save_checkpoint(out, ck)
        state_path.unlink(missing_ok=True)
    return summary


def _summary(history, best, step, total, stopped, t0, model) -> dict:
    best_rec = min(history, key=lambda r: r["val_loss"]) if history else {}
    return {"steps": step, "planned_steps": total, "epochs": len(history), "best_val_loss": best,
            "best_epoch": best_rec.get("epoch"), "best": best_rec, "stopped": stopped,
            "train_seconds": round(time.perf_counter() - t0, 1), "parameters": count_parameters(model),
            "history": history}


# ---------------------------------------------------------------------------------------------------------------
# Public entry points (the CLI is a thin layer over these)


def pretrain(data_dir: str | Path, out: str | Path, *, tcfg: TrainConfig | None = None,
             mcfg: ModelConfig | None = None, fcfg: FeatureConfig | None = None, device: str = "auto",
             resume: bool = False, progress: bool = True, log=print) -> dict:
    """Label-free feature-distillation pretraining on the train split of ``data_dir``; writes ``out``.

    Never reads azimuth/elevation: the dataset is loaded with ``labels=False``.
    """
    tcfg, mcfg, fcfg = tcfg or TrainConfig(), mcfg or ModelConfig(), fcfg or FeatureConfig()
    kinds = parse_kinds(tcfg.targets)
    out = Path(out)
    mcfg = dataclasses.replace(mcfg, n_bins=fcfg.n_fft // 2 + 1, target_dim=target_dim(fcfg, kinds))
    train = load_split(data_dir, "train", labels=False)
    val = load_split(data_dir, "val", labels=False)
    torch.manual_seed(tcfg.seed)
    model = DistillModel(mcfg)
    log(f"pretrain: {len(train)} train / {len(val)} val clips, targets {'+'.join(kinds)} "
        f"(dim {mcfg.target_dim}), encoder {count_parameters(model.encoder):,} parameters")

    def payload(m):
        return {"kind": "distill", "model_config": dataclasses.asdict(mcfg), "feature_config": dataclasses.asdict(fcfg),
                "targets": list(kinds), "state_dict": {k: v.detach().cpu() for k, v in m.state_dict().items()}}

    return fit(DistillTask(fcfg, kinds, tcfg.loss), model, train, val, tcfg, out, payload, device=device,
               resume=resume, progress=progress, log=log)


def encoder_from_pretrained(path: str | Path) -> tuple[dict, ModelConfig, FeatureConfig]:
    """Encoder weights and configs from a pretraining checkpoint (the predictor is discarded)."""
    ck = load_checkpoint(path, kind="distill")
    mcfg = config_from_dict(ModelConfig, ck["model_config"], str(path))
    fcfg = config_from_dict(FeatureConfig, ck["feature_config"], str(path))
    enc = {k[len("encoder."):]: v for k, v in ck["state_dict"].items() if k.startswith("encoder.")}
    if not enc:
        raise CheckpointError(f"{path}: no encoder weights found")
    return enc, mcfg, fcfg


def finetune(data_dir: str | Path, out: str | Path, *, init: str | Path | None = None,
             tcfg: TrainConfig | None = None, mcfg: ModelConfig | None = None, fcfg: FeatureConfig | None = None,
             device: str = "auto", resume: bool = False, progress: bool = True, log=print) -> dict:
    """Supervised DoA training on the train split of ``data_dir``; writes ``out``.

    With ``init`` the encoder starts from a pretrained checkpoint (its model and feature configs are used);
    without it the same network starts from random weights (the fully supervised baseline).
    """
    tcfg = tcfg or TrainConfig()
    out = Path(out)
    enc_state = None
    if init:
        enc_state, pmcfg, fcfg = encoder_from_pretrained(init)
        # Keep the pretrained encoder's architecture; take the DoA grid options from the caller.
        grid = {k: getattr(mcfg, k) for k in ("az_min", "az_max", "az_step", "full_circle")} if mcfg else {}
        mcfg = dataclasses.replace(pmcfg, target_dim=0, **grid)
        tcfg = dataclasses.replace(tcfg, init=str(init))
    mcfg, fcfg = mcfg or ModelConfig(), fcfg or FeatureConfig()
    mcfg = dataclasses.replace(mcfg, n_bins=fcfg.n_fft // 2 + 1, target_dim=0)
    train = label_subset(load_split(data_dir, "train", labels=True), tcfg.label_fraction, tcfg.seed)
    val = load_split(data_dir, "val", labels=True)
    torch.manual_seed(tcfg.seed)
    model = DoAModel(mcfg)
    if enc_state is not None:
        try:
            model.encoder.load_state_dict(enc_state)
        except RuntimeError as e:
            raise CheckpointError(f"{init}: encoder weights do not fit the model ({str(e).splitlines()[0]})") from None
    if tcfg.freeze_encoder:
        if enc_state is None:
            log("warning: --freeze-encoder without --init trains a head on a random encoder")
        for p in model.encoder.parameters():
            p.requires_grad_(False)
    log(f"finetune: {len(train)} labelled train clips (fraction {tcfg.label_fraction:g}) / {len(val)} val, "
        f"init {'pretrained ' + str(init) if init else 'random'}, {count_parameters(model):,} parameters"
        f"{', encoder frozen' if tcfg.freeze_encoder else ''}")

    def payload(m):
        return {"kind": "doa", "model_config": dataclasses.asdict(mcfg), "feature_config": dataclasses.asdict(fcfg),
                "azimuth_grid": azimuth_grid(mcfg).tolist(),
                "state_dict": {k: v.detach().cpu() for k, v in m.state_dict().items()}}

    return fit(DoATask(fcfg, mcfg, tcfg.inactive_weight), model, train, val, tcfg, out, payload, device=device, resume=resume,
               progress=progress, log=log)


def load_doa_model(path: str | Path) -> tuple[DoAModel, FeatureConfig, ModelConfig, dict]:
    """A fine-tuned DoA model ready for inference (eval mode, CPU) with its configs and checkpoint dict."""
    ck = load_checkpoint(path, kind="doa")
    mcfg = config_from_dict(ModelConfig, ck["model_config"], str(path))
    fcfg = config_from_dict(FeatureConfig, ck["feature_config"], str(path))
    model = DoAModel(mcfg)
    try:
        model.load_state_dict(ck["state_dict"])
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not match its model config ({str(e).splitlines()[0]})") from None
    model.eval()
    return model, fcfg, mcfg, ck
