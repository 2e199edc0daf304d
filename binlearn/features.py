"""Binaural spectral features: network inputs and spatial distillation targets.

All functions are pure, take waveforms ``x`` of shape ``(batch, 2, time)``
(channel 0 = left ear, 1 = right ear) and follow the device and dtype of ``x``.

Sign conventions
----------------
* Interaural delay ``tau > 0`` when the LEFT ear leads (source on the left).
  If the right ear is a copy of the left one delayed by ``tau``,
  ``X_R(f) = X_L(f) exp(-j 2 pi f tau)`` and the cross-spectrum
  ``C(f) = X_L(f) conj(X_R(f)) = |X_L|^2 exp(+j 2 pi f tau)``.
* IPD = ``angle(C)`` therefore grows as ``+2 pi f tau``.
* GCC-PHAT ``R(tau_k) = Re sum_f W(f) C(f)/|C(f)| exp(-j 2 pi f tau_k)``
  peaks at ``tau_k = +tau``.
* ILD = ``10 log10(P_L / P_R)`` dB, positive when the left ear is louder.

Target normalisation
--------------------
Targets use a fixed per-kind scaling (no running statistics to store or to
drift between pretraining runs):

* ``gcc``: PHAT weighting with a mean over the used bins keeps it in [-1, 1]
  already (1 = perfectly coherent delay at that lag); left as is.
* ``ipd``: cos/sin of the band IPD are in [-1, 1]; left as is.
* ``ild``: dB divided by ``ild_scale_db`` (20) and clipped to
  ``+-ild_clip_db / ild_scale_db`` (+-1.5).

``target_features(..., normalise=True)`` (the default) returns normalised
targets; ``normalise=False`` gives raw units and ``normalise_targets`` maps
raw to normalised.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

TARGET_KINDS = ("gcc", "ipd", "ild")


@dataclass
class FeatureConfig:
    fs: int = 16000
    n_fft: int = 512  # 32 ms
    hop: int = 160  # 10 ms
    # GCC-PHAT lag range +-1 ms: human ITDs reach ~0.7-0.8 ms, +-0.5 ms would truncate them.
    max_lag_ms: float = 1.0
    # Lag grid across +-max_lag; evaluated exactly by frequency-domain steering (fractional lags ok).
    n_lags: int = 33
    gcc_fmin: float = 100.0  # PHAT whitening makes low/high edge bins pure noise; restrict the band
    gcc_fmax: float = 7000.0
    # ILD target: bands log-spaced between ild_fmin and ild_fmax (band power ratio, less noisy than per-bin).
    n_ild_bands: int = 16
    ild_fmin: float = 100.0
    ild_fmax: float = 8000.0
    ild_scale_db: float = 20.0
    ild_clip_db: float = 30.0
    # IPD target: bins in (0, ipd_fmax] grouped into n_ipd_bins contiguous bands (2 bins each by
    # default); the band cross-spectrum sum gives a magnitude-weighted mean phase. Target dim = 2 * n_ipd_bins.
    n_ipd_bins: int = 64
    ipd_fmax: float = 4000.0
    eps: float = 1e-8

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1

    def n_frames(self, n_samples: int) -> int:
        return n_samples // self.hop + 1


# ---------------------------------------------------------------------------
# grids and band matrices (small; rebuilt per call on the input's device)


def bin_freqs(cfg: FeatureConfig, device=None, dtype=torch.float32) -> Tensor:
    """Centre frequency of each STFT bin in Hz. Returns ``(n_bins,)``."""
    return torch.arange(cfg.n_bins, device=device, dtype=dtype) * (cfg.fs / cfg.n_fft)


def lag_grid(cfg: FeatureConfig, device=None, dtype=torch.float32) -> Tensor:
    """GCC-PHAT lags in seconds, ``linspace(-max_lag, +max_lag, n_lags)``. Returns ``(n_lags,)``."""
    m = cfg.max_lag_ms * 1e-3
    return torch.linspace(-m, m, cfg.n_lags, device=device, dtype=dtype)


def _gcc_steering(cfg: FeatureConfig, device, dtype) -> tuple[Tensor, Tensor]:
    """Real/imag parts of ``W(f) exp(-j 2 pi f tau_k) / sum W``, each ``(n_bins, n_lags)``."""
    # float64 for the phase so large f*tau products stay exact, then cast.
    f = bin_freqs(cfg, device, torch.float64)
    w = ((f >= cfg.gcc_fmin) & (f <= cfg.gcc_fmax)).to(torch.float64)
    w = w / w.sum().clamp_min(1.0)
    phase = 2 * math.pi * f[:, None] * lag_grid(cfg, device, torch.float64)[None, :]
    # Re(G e^{-j phi}) = Gr cos(phi) + Gi sin(phi)
    return (w[:, None] * torch.cos(phase)).to(dtype), (w[:, None] * torch.sin(phase)).to(dtype)


def ild_band_edges(cfg: FeatureConfig) -> Tensor:
    """Log-spaced ILD band edges in Hz (float64, CPU). Returns ``(n_ild_bands + 1,)``."""
    return torch.logspace(
        math.log10(cfg.ild_fmin), math.log10(cfg.ild_fmax), cfg.n_ild_bands + 1, dtype=torch.float64
    )


def ild_band_matrix(cfg: FeatureConfig, device=None, dtype=torch.float32) -> Tensor:
    """0/1 bin-to-band assignment for ILD bands. Returns ``(n_bins, n_ild_bands)``.

    Band b holds bins with ``edge[b] <= f < edge[b+1]`` (last band closed). A band
    narrower than the bin spacing falls back to its nearest bin so no band is empty.
    """
    f = bin_freqs(cfg, None, torch.float64)
    e = ild_band_edges(cfg)
    m = (f[:, None] >= e[None, :-1]) & (f[:, None] < e[None, 1:])
    m[:, -1] |= f == e[-1]
    centres = torch.sqrt(e[:-1] * e[1:])
    for b in torch.nonzero(m.sum(0) == 0).flatten().tolist():
        m[torch.argmin((f - centres[b]).abs()), b] = True
    return m.to(device=device, dtype=dtype)


def ipd_band_matrix(cfg: FeatureConfig, device=None, dtype=torch.float32) -> Tensor:
    """0/1 bin-to-band assignment for IPD bands. Returns ``(n_bins, n_ipd_bins)``.

    Bins with ``0 < f <= ipd_fmax`` (DC excluded: no phase) split into
    ``n_ipd_bins`` contiguous groups of (nearly) equal size.
    """
    f = bin_freqs(cfg, None, torch.float64)
    sel = torch.nonzero((f > 0) & (f <= cfg.ipd_fmax + 1e-9)).flatten()
    if len(sel) < cfg.n_ipd_bins:
        raise ValueError(f"n_ipd_bins={cfg.n_ipd_bins} exceeds the {len(sel)} bins below ipd_fmax")
    group = torch.arange(len(sel)) * cfg.n_ipd_bins // len(sel)
    m = torch.zeros(cfg.n_bins, cfg.n_ipd_bins, dtype=dtype)
    m[sel, group] = 1.0
    return m.to(device)


def ipd_band_freqs(cfg: FeatureConfig) -> Tensor:
    """Mean frequency (Hz) of each IPD band. Returns ``(n_ipd_bins,)`` float64."""
    m = ipd_band_matrix(cfg, dtype=torch.float64)
    return (bin_freqs(cfg, dtype=torch.float64) @ m) / m.sum(0)


# ---------------------------------------------------------------------------
# STFT and input features


def stft(x: Tensor, cfg: FeatureConfig) -> Tensor:
    """Hann-window STFT of both ears, ``center=True`` with zero padding.

    Args:
        x: ``(B, 2, T)`` real waveform.
    Returns:
        ``(B, 2, frames, n_bins)`` complex, ``frames = T // hop + 1``.
    """
    if x.dim() != 3 or x.shape[1] != 2:
        raise ValueError(f"expected waveform (batch, 2, time), got {tuple(x.shape)}")
    B, C, T = x.shape
    win = torch.hann_window(cfg.n_fft, periodic=True, device=x.device, dtype=x.dtype)
    # zero ("constant") padding: reflect padding fails on clips shorter than n_fft/2
    X = torch.stft(
        x.reshape(B * C, T), cfg.n_fft, hop_length=cfg.hop, win_length=cfg.n_fft, window=win,
        center=True, pad_mode="constant", return_complex=True,
    )
    return X.reshape(B, C, cfg.n_bins, -1).transpose(-1, -2)


def _cross(XL: Tensor, XR: Tensor) -> Tensor:
    """X_L conj(X_R) from explicit real products, so identical ears give an imaginary part of exactly 0."""
    a, b, c, d = XL.real, XL.imag, XR.real, XR.imag
    return torch.complex(a * c + b * d, b * c - a * d)


def _phasor(c: Tensor, eps: float) -> Tensor:
    # c / (|c| + eps): unit phasor for energetic bins, shrinks towards 0 for silent ones
    # (rather than the arbitrary angle(0) = 0, which would claim "straight ahead").
    return c / (c.abs() + eps)


def input_features_from_stft(X: Tensor, cfg: FeatureConfig) -> Tensor:
    """Network input from an STFT ``(B, 2, frames, bins)``. Returns ``(B, 5, frames, bins)``."""
    XL, XR = X[:, 0], X[:, 1]
    logmag = torch.log(X.abs() + cfg.eps)  # (B, 2, T, F)
    p = _phasor(_cross(XL, XR), cfg.eps)
    PL, PR = XL.abs().square(), XR.abs().square()
    ild = 10 * torch.log10((PL + cfg.eps) / (PR + cfg.eps))
    lim = cfg.ild_clip_db / cfg.ild_scale_db
    ild = (ild / cfg.ild_scale_db).clamp(-lim, lim)
    return torch.cat([logmag, p.real[:, None], p.imag[:, None], ild[:, None]], dim=1)


def input_features(x: Tensor, cfg: FeatureConfig) -> Tensor:
    """Per-bin network input features.

    Channels: log|X_L|, log|X_R|, cos IPD, sin IPD, ILD/ild_scale_db (clipped),
    with IPD = angle(X_L conj X_R) (cos/sin shrink towards 0 on silent bins).

    Args:
        x: ``(B, 2, T)`` waveform.
    Returns:
        ``(B, 5, frames, n_bins)`` real, dtype of ``x``.
    """
    return input_features_from_stft(stft(x, cfg), cfg)


# ---------------------------------------------------------------------------
# spatial targets


def gcc_phat_from_stft(X: Tensor, cfg: FeatureConfig) -> Tensor:
    """GCC-PHAT from an STFT ``(B, 2, frames, bins)``. Returns ``(B, frames, n_lags)``."""
    G = _phasor(_cross(X[:, 0], X[:, 1]), cfg.eps)
    cos_m, sin_m = _gcc_steering(cfg, X.device, G.real.dtype)
    return G.real @ cos_m + G.imag @ sin_m


def gcc_phat(x: Tensor, cfg: FeatureConfig) -> Tensor:
    """Per-frame GCC-PHAT evaluated exactly at ``lag_grid(cfg)``.

    ``R(tau_k) = Re sum_f W(f) G(f) exp(-j 2 pi f tau_k)`` with
    ``G = C/|C|``, ``C = X_L conj(X_R)``, ``W`` = mean over bins in
    ``[gcc_fmin, gcc_fmax]``. Peaks at ``tau_k > 0`` when the left ear leads;
    values lie in [-1, 1].

    Args:
        x: ``(B, 2, T)`` waveform.
    Returns:
        ``(B, frames, n_lags)``.
    """
    return gcc_phat_from_stft(stft(x, cfg), cfg)


def peak_lag(r: Tensor, cfg: FeatureConfig) -> Tensor:
    """Lag (seconds) of the maximum of GCC curves, with parabolic sub-grid interpolation.

    Args:
        r: ``(..., n_lags)``.
    Returns:
        ``(...)`` seconds; edge maxima are not interpolated.
    """
    k = r.argmax(-1)
    km, kp = (k - 1).clamp_min(0), (k + 1).clamp_max(cfg.n_lags - 1)
    y0 = r.gather(-1, k[..., None])[..., 0]
    ym = r.gather(-1, km[..., None])[..., 0]
    yp = r.gather(-1, kp[..., None])[..., 0]
    den = ym - 2 * y0 + yp
    delta = torch.where(den < 0, 0.5 * (ym - yp) / den.clamp_max(-1e-12), torch.zeros_like(den))
    interior = (k > 0) & (k < cfg.n_lags - 1)
    delta = torch.where(interior, delta.clamp(-0.5, 0.5), torch.zeros_like(delta))
    step = 2 * cfg.max_lag_ms * 1e-3 / (cfg.n_lags - 1)
    return -cfg.max_lag_ms * 1e-3 + (k.to(r.dtype) + delta) * step


def parse_kinds(spec) -> tuple[str, ...]:
    """``"gcc+ipd+ild"`` / ``"gcc,ipd"`` (or a sequence) -> validated tuple of kinds."""
    items = spec.replace(",", "+").split("+") if isinstance(spec, str) else list(spec)
    kinds = tuple(s.strip().lower() for s in items if s.strip())
    if not kinds:
        raise ValueError(f"no target kinds in {spec!r}; choose from {', '.join(TARGET_KINDS)}")
    for k in kinds:
        if k not in TARGET_KINDS:
            raise ValueError(f"unknown target kind {k!r}; choose from {', '.join(TARGET_KINDS)}")
    if len(set(kinds)) != len(kinds):
        raise ValueError(f"duplicate target kind in {spec!r}")
    return kinds


def _kind_dim(cfg: FeatureConfig, kind: str) -> int:
    return {"gcc": cfg.n_lags, "ipd": 2 * cfg.n_ipd_bins, "ild": cfg.n_ild_bands}[kind]


def target_dim(cfg: FeatureConfig, kinds=TARGET_KINDS) -> int:
    """Total target size per frame for ``kinds`` (gcc: n_lags, ipd: 2*n_ipd_bins, ild: n_ild_bands)."""
    return sum(_kind_dim(cfg, k) for k in parse_kinds(kinds))


def target_slices(cfg: FeatureConfig, kinds=TARGET_KINDS) -> dict[str, slice]:
    """Where each kind sits in the concatenated target vector (e.g. for per-kind losses)."""
    out, i = {}, 0
    for k in parse_kinds(kinds):
        out[k] = slice(i, i + _kind_dim(cfg, k))
        i += _kind_dim(cfg, k)
    return out


def _ipd_target(X: Tensor, cfg: FeatureConfig) -> Tensor:
    C = _cross(X[:, 0], X[:, 1])  # (B, T, F)
    m = ipd_band_matrix(cfg, X.device, C.real.dtype)
    p = _phasor(torch.complex(C.real @ m, C.imag @ m), cfg.eps)  # band-summed cross-spectrum
    return torch.cat([p.real, p.imag], dim=-1)  # all cos, then all sin


def _ild_target_db(X: Tensor, cfg: FeatureConfig) -> Tensor:
    P = X.abs().square()  # (B, 2, T, F)
    m = ild_band_matrix(cfg, X.device, P.dtype)
    Pb = P @ m
    return 10 * torch.log10((Pb[:, 0] + cfg.eps) / (Pb[:, 1] + cfg.eps))


def target_features_from_stft(X: Tensor, cfg: FeatureConfig, kinds=TARGET_KINDS, normalise: bool = True) -> Tensor:
    """Targets from an STFT ``(B, 2, frames, bins)``. Returns ``(B, frames, D)``."""
    parts = []
    for k in parse_kinds(kinds):
        if k == "gcc":
            parts.append(gcc_phat_from_stft(X, cfg))
        elif k == "ipd":
            parts.append(_ipd_target(X, cfg))
        else:
            ild = _ild_target_db(X, cfg)
            parts.append(_normalise_ild(ild, cfg) if normalise else ild)
    return torch.cat(parts, dim=-1)


def target_features(x: Tensor, cfg: FeatureConfig, kinds=TARGET_KINDS, normalise: bool = True) -> Tensor:
    """Spatial distillation targets, concatenated in the order of ``kinds``.

    * gcc: GCC-PHAT at ``lag_grid`` (``n_lags``), in [-1, 1].
    * ipd: cos then sin of the band IPD (``2 * n_ipd_bins``), in [-1, 1].
    * ild: band ILD (``n_ild_bands``); dB/ild_scale_db clipped if ``normalise``, raw dB otherwise.

    Args:
        x: ``(B, 2, T)`` waveform (normally the clean direct-path signal).
    Returns:
        ``(B, frames, target_dim(cfg, kinds))``.
    """
    return target_features_from_stft(stft(x, cfg), cfg, kinds, normalise)


def _normalise_ild(ild_db: Tensor, cfg: FeatureConfig) -> Tensor:
    lim = cfg.ild_clip_db / cfg.ild_scale_db
    return (ild_db / cfg.ild_scale_db).clamp(-lim, lim)


def normalise_targets(raw: Tensor, cfg: FeatureConfig, kinds=TARGET_KINDS) -> Tensor:
    """Map raw targets (``normalise=False``) to the fixed per-kind scaling. ``(..., D) -> (..., D)``.

    Only ILD changes (dB / ild_scale_db, clipped); GCC-PHAT and IPD cos/sin are already in [-1, 1].
    """
    sl = target_slices(cfg, kinds)
    if "ild" not in sl:
        return raw
    out = raw.clone()
    out[..., sl["ild"]] = _normalise_ild(raw[..., sl["ild"]], cfg)
    return out


# ---------------------------------------------------------------------------
# frame activity


def frame_energy_db_from_stft(X: Tensor, cfg: FeatureConfig) -> Tensor:
    """Frame energy of both ears in dB from an STFT. ``(B, 2, frames, bins) -> (B, frames)``."""
    e = X.abs().square().sum(dim=(1, 3)) / cfg.n_fft
    return 10 * torch.log10(e + cfg.eps)


def frame_energy_db(x: Tensor, cfg: FeatureConfig) -> Tensor:
    """Windowed frame energy of both ears in dB (arbitrary reference; use relative values).

    Frames are the STFT frames. ``(B, 2, T) -> (B, frames)``.
    """
    return frame_energy_db_from_stft(stft(x, cfg), cfg)


def active_frames(x: Tensor, cfg: FeatureConfig, threshold_db: float = -30.0) -> Tensor:
    """Frames within ``threshold_db`` of the clip's loudest frame. ``(B, 2, T) -> (B, frames)`` bool.

    Used to mask targets/labels on silent frames of the clean signal. Frames at the
    numerical floor (energy <= eps, e.g. an all-zero clip) are never active.
    """
    e = frame_energy_db(x, cfg)
    floor = 10 * math.log10(2 * cfg.eps)  # a hair above the value of an all-zero frame
    return (e >= e.amax(dim=-1, keepdim=True) + threshold_db) & (e > floor)
