"""CRNN encoder, distillation predictor and DoA head, plus azimuth-grid utilities.

Encoder: input BatchNorm -> 3 x [Conv2d 3x3 over (time, freq) -> BatchNorm -> ReLU ->
MaxPool over freq only] -> (bi)GRU over time -> Linear to embed_dim per frame.
Time resolution is kept end to end, so every output frame lines up with an STFT frame.

causal=True: conv padding only on the past side in time, unidirectional GRU, and the
only normalisation is BatchNorm (per-channel running statistics in eval mode), so an
output frame depends on current and past input frames only.

Azimuth convention: degrees, 0 = ahead, positive = listener's left. Default grid is
the frontal half-plane -90..90 in 5 degree steps (37 classes); ``full_circle=True``
uses -180..180-step (72 classes) with wrap-around.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


@dataclass
class ModelConfig:
    in_channels: int = 5
    n_bins: int = 257
    conv_channels: tuple = (32, 64, 64)
    freq_pool: tuple = (4, 4, 4)  # max-pool over frequency only; time resolution kept
    gru_hidden: int = 128
    gru_layers: int = 1
    causal: bool = False
    embed_dim: int = 128
    dropout: float = 0.1
    head_hidden: int = 128  # DoA head MLP hidden size; 0 = linear head
    # DoA grid
    az_min: float = -90.0
    az_max: float = 90.0
    az_step: float = 5.0
    full_circle: bool = False  # grid -180 .. 180-az_step with wrap-around (az_min/az_max ignored)
    target_dim: int = 0  # predictor output size (features.target_dim)

    @property
    def n_classes(self) -> int:
        if self.full_circle:
            return int(round(360.0 / self.az_step))
        return int(round((self.az_max - self.az_min) / self.az_step)) + 1

    @property
    def grid_start(self) -> float:
        return -180.0 if self.full_circle else self.az_min


# ---------------------------------------------------------------------------
# modules


class ConvBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, pool: int, causal: bool):
        super().__init__()
        self.causal = causal
        # causal: pad 2 past frames by hand, none in the future; freq always symmetric
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=(0 if causal else 1, 1), bias=False)
        self.norm = nn.BatchNorm2d(c_out)
        self.pool = nn.MaxPool2d((1, pool))

    def forward(self, x: Tensor) -> Tensor:  # (B, C, T, F) -> (B, C', T, F // pool)
        if self.causal:
            x = F.pad(x, (0, 0, 2, 0))
        return self.pool(F.relu(self.norm(self.conv(x))))


class Encoder(nn.Module):
    """``forward(feats (B, C, T, F)) -> (B, T, embed_dim)``."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        # log-magnitudes sit around -18..+5 depending on level; learnable per-channel normalisation
        self.in_norm = nn.BatchNorm2d(cfg.in_channels)
        blocks, c, f = [], cfg.in_channels, cfg.n_bins
        for c_out, p in zip(cfg.conv_channels, cfg.freq_pool):
            blocks.append(ConvBlock(c, c_out, p, cfg.causal))
            c, f = c_out, f // p
        self.convs = nn.Sequential(*blocks)
        bidir = not cfg.causal
        self.gru = nn.GRU(
            c * f, cfg.gru_hidden, num_layers=cfg.gru_layers, batch_first=True, bidirectional=bidir,
            dropout=cfg.dropout if cfg.gru_layers > 1 else 0.0,
        )
        self.drop = nn.Dropout(cfg.dropout)
        self.proj = nn.Linear(cfg.gru_hidden * (2 if bidir else 1), cfg.embed_dim)

    def forward(self, feats: Tensor) -> Tensor:
        h = self.convs(self.in_norm(feats))  # (B, C', T, F')
        B, C, T, Fr = h.shape
        h = h.permute(0, 2, 1, 3).reshape(B, T, C * Fr)
        h, _ = self.gru(h)
        return self.proj(self.drop(h))


class Predictor(nn.Module):
    """Small per-frame MLP, ``(B, T, E) -> (B, T, D)``; discarded after pretraining."""

    def __init__(self, cfg: ModelConfig, hidden: int = 256):
        super().__init__()
        if cfg.target_dim <= 0:
            raise ValueError("ModelConfig.target_dim must be set (features.target_dim) for the predictor")
        self.net = nn.Sequential(nn.Linear(cfg.embed_dim, hidden), nn.GELU(), nn.Linear(hidden, cfg.target_dim))

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


class DoAHead(nn.Module):
    """Per-frame azimuth classifier, ``(B, T, E) -> (B, T, K)`` logits."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.head_hidden > 0:
            self.net = nn.Sequential(
                nn.Linear(cfg.embed_dim, cfg.head_hidden), nn.GELU(), nn.Dropout(cfg.dropout),
                nn.Linear(cfg.head_hidden, cfg.n_classes),
            )
        else:
            self.net = nn.Linear(cfg.embed_dim, cfg.n_classes)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


class DistillModel(nn.Module):
    """Encoder + predictor: ``forward(feats (B, C, T, F)) -> (B, T, target_dim)``."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.predictor = Predictor(cfg)

    def forward(self, feats: Tensor) -> Tensor:
        return self.predictor(self.encoder(feats))


class DoAModel(nn.Module):
    """Encoder + DoA head: ``forward(feats (B, C, T, F)) -> (B, T, n_classes)`` logits.

    Pass ``encoder`` (e.g. ``distill_model.encoder``) to fine-tune a pretrained encoder.
    """

    def __init__(self, cfg: ModelConfig, encoder: Encoder | None = None):
        super().__init__()
        self.cfg = cfg
        self.encoder = encoder if encoder is not None else Encoder(cfg)
        self.head = DoAHead(cfg)

    def forward(self, feats: Tensor) -> Tensor:
        return self.head(self.encoder(feats))


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ---------------------------------------------------------------------------
# azimuth grid utilities


def wrap_deg(az: Tensor) -> Tensor:
    """Wrap degrees to [-180, 180)."""
    return torch.remainder(az + 180.0, 360.0) - 180.0


def azimuth_grid(cfg: ModelConfig, device=None, dtype=torch.float32) -> Tensor:
    """Class-centre azimuths in degrees. Returns ``(K,)``."""
    return cfg.grid_start + cfg.az_step * torch.arange(cfg.n_classes, device=device, dtype=dtype)


def azimuth_to_class(az_deg: Tensor, cfg: ModelConfig) -> Tensor:
    """Nearest grid class (long, same shape as ``az_deg``); wraps for full circle, clamps otherwise."""
    az = torch.as_tensor(az_deg).to(torch.float64)  # stays on the input's device
    if cfg.full_circle:
        k = torch.round((wrap_deg(az) + 180.0) / cfg.az_step)
        return torch.remainder(k, cfg.n_classes).long()
    k = torch.round((az - cfg.az_min) / cfg.az_step).clamp(0, cfg.n_classes - 1)
    return k.long()


def soft_labels(az_deg: Tensor, cfg: ModelConfig, sigma_deg: float | None = None) -> Tensor:
    """Gaussian target distribution around a continuous azimuth (sub-grid information).

    Args:
        az_deg: ``(B,)`` degrees.
        sigma_deg: width; default ``cfg.az_step``.
    Returns:
        ``(B, K)`` rows summing to 1, dtype float32 unless ``az_deg`` is floating.
    """
    az = torch.as_tensor(az_deg)
    dtype = az.dtype if az.is_floating_point() else torch.float32
    az = az.to(dtype)
    sigma = cfg.az_step if sigma_deg is None else sigma_deg
    d = az[:, None] - azimuth_grid(cfg, az.device, dtype)[None, :]
    if cfg.full_circle:
        d = wrap_deg(d)
    logp = -0.5 * (d / sigma) ** 2
    return torch.softmax(logp, dim=-1)  # softmax = normalised exp without underflow to all-zero rows


def frames_to_azimuth(logits: Tensor, cfg: ModelConfig) -> Tensor:
    """Continuous azimuth from class scores, parabolic interpolation of log-probs at the argmax.

    Exact for Gaussian-shaped posteriors (log is a parabola). At a half-plane edge
    the parabola uses the three innermost points and the result is clamped to the
    grid range; the full circle wraps neighbours and the result to [-180, 180).

    Args:
        logits: ``(..., K)`` logits or log-probs.
    Returns:
        ``(...)`` degrees.
    """
    K = cfg.n_classes
    lp = torch.log_softmax(logits, dim=-1).clamp_min(-1e4)  # finite even for -inf logits
    k = lp.argmax(-1)
    # parabola through 3 points centred at c; at a half-plane edge use the 3 innermost points
    c = k if cfg.full_circle else k.clamp(1, K - 2)
    cm, cp = (c - 1) % K, (c + 1) % K
    y0 = lp.gather(-1, c[..., None])[..., 0]
    ym = lp.gather(-1, cm[..., None])[..., 0]
    yp = lp.gather(-1, cp[..., None])[..., 0]
    den = ym - 2 * y0 + yp
    kf = k.to(lp.dtype)
    # no concave fit (e.g. one-hot at an edge): fall back to the argmax
    pos = torch.where(den < 0, c.to(lp.dtype) + 0.5 * (ym - yp) / den.clamp_max(-1e-12), kf)
    # stay within half a step of the argmax (and inside the half-plane grid)
    pos = torch.minimum(torch.maximum(pos, kf - 0.5), kf + 0.5)
    if not cfg.full_circle:
        pos = pos.clamp(0, K - 1)
    az = cfg.grid_start + pos * cfg.az_step
    return wrap_deg(az) if cfg.full_circle else az


def pool_utterance(logits: Tensor, mask: Tensor | None = None) -> Tensor:
    """Utterance-level log-posterior: log of the mean frame posterior over active frames.

    Mean of probabilities (not of log-probs) so a few confidently wrong noisy
    frames cannot veto the true direction. Clips with no active frame use all frames.

    Args:
        logits: ``(B, T, K)``.
        mask: ``(B, T)`` bool, True = use frame; None = all frames.
    Returns:
        ``(B, K)`` log-probs.
    """
    p = torch.softmax(logits, dim=-1)
    if mask is None:
        return torch.log(p.mean(1).clamp_min(1e-12))
    m = mask.to(p.dtype)
    m = torch.where(m.sum(1, keepdim=True) > 0, m, torch.ones_like(m))
    pooled = (p * m[..., None]).sum(1) / m.sum(1, keepdim=True)
    return torch.log(pooled.clamp_min(1e-12))


def confidence(probs: Tensor, cfg: ModelConfig | None = None) -> Tensor:
    """Peak mass: probability within +-1 class of the argmax, rescaled so uniform -> 0, one-hot -> 1.

    Args:
        probs: ``(B, K)`` probabilities (exp of ``pool_utterance``).
        cfg: if given and ``full_circle``, neighbours wrap around.
    Returns:
        ``(B,)`` in [0, 1].
    """
    K = probs.shape[-1]
    k = probs.argmax(-1, keepdim=True)
    wrap = cfg is not None and cfg.full_circle
    idx = torch.cat([k - 1, k, k + 1], dim=-1)
    if wrap:
        mass = probs.gather(-1, idx % K).sum(-1)
    else:
        valid = (idx >= 0) & (idx < K)
        mass = (probs.gather(-1, idx.clamp(0, K - 1)) * valid).sum(-1)
    base = min(3.0, K) / K
    if base >= 1.0:
        return torch.ones_like(mass)
    return ((mass - base) / (1.0 - base)).clamp(0.0, 1.0)
