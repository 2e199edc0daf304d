"""``binlearn doa``: where is the talker in a binaural recording?

Long files are streamed in blocks (30 s with 2 s overlap) so memory stays bounded: only the per-frame
posteriors (37 floats per 10 ms frame) are kept, never the whole spectrogram. Frames within 1 s of a block
edge are taken from the neighbouring block, so the bidirectional encoder always sees context.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from .audio import AudioError, audio_info, iter_audio_blocks
from .features import FeatureConfig, input_features
from .model import confidence, frames_to_azimuth
from .train import load_doa_model, resolve_device

BLOCK_S = 30.0
OVERLAP_S = 2.0
SILENCE_DBFS = -60.0    # a frame this quiet (RMS over both ears, re full scale) carries no talker
ACTIVE_REL_DB = -30.0   # frames within 30 dB of the loudest frame are pooled, as in training/evaluation


def default_model_path() -> Path:
    """The model bundled with the package (trained by examples/train_default.sh)."""
    return Path(str(resources.files("binlearn") / "models" / "default.pt"))


@dataclass
class DoAResult:
    """One file's answer. ``azimuth`` is None when no talker was found (silence)."""

    file: str
    azimuth: float | None
    confidence: float
    duration_s: float
    active_s: float
    frames: list[float | None] = field(default_factory=list)   # per 10 ms frame, None where inactive
    frame_times: list[float] = field(default_factory=list)
    error: str | None = None

    def to_json(self, with_frames: bool = False) -> dict:
        if self.error:
            return {"file": self.file, "azimuth": None, "confidence": 0.0, "error": self.error}
        d = {"file": self.file, "azimuth": None if self.azimuth is None else round(self.azimuth, 2),
             "confidence": round(self.confidence, 4)}
        if self.azimuth is None:
            d["talker"] = False
        d["duration_s"] = round(self.duration_s, 3)
        if with_frames:
            d["frame_hop_s"] = 0.01
            d["frames"] = [None if f is None else round(f, 2) for f in self.frames]
        return d


class Localiser:
    """A loaded DoA model that answers files; reuse it across files."""

    def __init__(self, model_path: str | Path | None = None, device: str = "cpu"):
        path = Path(model_path) if model_path else default_model_path()
        self.model, self.fcfg, self.mcfg, _ = load_doa_model(path)
        self.device = resolve_device(device)
        self.model.to(self.device)
        self.path = path

    def frame_posteriors(self, x: torch.Tensor) -> torch.Tensor:
        """(2, time) waveform -> (frames, K) posteriors."""
        with torch.no_grad():
            logits = self.model(input_features(x[None].to(self.device), self.fcfg))[0].float()
        return torch.softmax(logits, -1).cpu()

    def __call__(self, path: str | Path, *, label: str | None = None) -> DoAResult:
        """Localise the talker in one file (streamed). Raises AudioError for unusable input."""
        label = str(path) if label is None else label
        sr, ch, n_in = audio_info(path)
        if ch != 2:
            raise AudioError(f"{Path(path).name}: expected 2 channels (left, right), got {ch}")
        fs, hop = self.fcfg.fs, self.fcfg.hop
        duration = n_in / sr
        if int(n_in * fs / sr) < self.fcfg.n_fft:
            raise AudioError(f"{Path(path).name}: too short ({duration * 1000:.0f} ms; need at least "
                             f"{1000 * self.fcfg.n_fft / fs:.0f} ms)")
        block_hop = int(round((BLOCK_S - OVERLAP_S) * fs))
        edge = int(round(OVERLAP_S / 2 * fs)) // hop          # frames taken from the neighbour block
        probs, energy = [], []
        blocks = iter_audio_blocks(path, BLOCK_S, OVERLAP_S, fs)
        cur = next(blocks, None)
        k = 0
        while cur is not None:
            nxt = next(blocks, None)
            x = torch.from_numpy(np.ascontiguousarray(cur))
            p = self.frame_posteriors(x)                        # (frames, K)
            e = _frame_rms_db(x, self.fcfg)                     # (frames,)
            # Block k covers global frames k*H + [0, frames); keep [edge, H + edge) of it (all of the first
            # block's start, all of the last block's end), so every kept frame has >= 1 s of context.
            lo = 0 if k == 0 else edge
            hi = p.shape[0] if nxt is None else block_hop // hop + edge
            probs.append(p[lo:hi])
            energy.append(e[lo:hi])
            cur, k = nxt, k + 1
        P = torch.cat(probs)
        E = torch.cat(energy)
        # Active frames: loud in absolute terms and within 30 dB of the loudest frame.
        top = float(E.max())
        active = (E > SILENCE_DBFS) & (E >= top + ACTIVE_REL_DB)
        times = (torch.arange(P.shape[0]) * hop / fs).tolist()
        if not bool(active.any()):
            return DoAResult(label, None, 0.0, duration, 0.0, [None] * P.shape[0], times)
        pooled = P[active].mean(0, keepdim=True)
        az = float(frames_to_azimuth(torch.log(pooled.clamp_min(1e-12)), self.mcfg)[0])
        conf = float(confidence(pooled, self.mcfg)[0])
        fr = frames_to_azimuth(torch.log(P.clamp_min(1e-12)), self.mcfg)
        frames = [float(a) if m else None for a, m in zip(fr.tolist(), active.tolist())]
        return DoAResult(label, az, conf, duration, float(active.sum()) * hop / fs, frames, times)


def _frame_rms_db(x: torch.Tensor, fcfg: FeatureConfig) -> torch.Tensor:
    """Frame RMS over both ears in dB re full scale, on the STFT's frame grid. (2, T) -> (frames,)."""
    n, hop = fcfg.n_fft, fcfg.hop
    xp = torch.nn.functional.pad(x[None], (n // 2, n // 2))[0]
    fr = xp.unfold(-1, n, hop)                           # (2, frames, n)
    ms = fr.pow(2).mean(dim=(0, 2))
    return 10 * torch.log10(ms.clamp_min(1e-20))


def doa(files, model: str | Path | None = None, *, device: str = "cpu") -> list[DoAResult]:
    """Localise the talker in each file; a file that fails gets ``error`` set instead of stopping the rest."""
    loc = Localiser(model, device)
    out = []
    for f in files:
        try:
            out.append(loc(f))
        except AudioError as e:
            out.append(DoAResult(str(f), None, 0.0, 0.0, 0.0, error=str(e)))
    return out


def plot_tracks(results: list[DoAResult], path: str | Path) -> Path:
    """Per-file azimuth track over time plus a polar view of the utterance estimates (PNG, atomic write)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in results if not r.error]
    fig = plt.figure(figsize=(10, 4))
    ax = fig.add_subplot(1, 2, 1)
    for r in ok:
        t = np.array(r.frame_times[: len(r.frames)])
        y = np.array([np.nan if v is None else v for v in r.frames], float)
        ax.plot(t, y, ".", ms=2, label=Path(r.file).name)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("azimuth (deg, + = left)")
    ax.set_ylim(-95, 95)
    ax.grid(alpha=0.3)
    if ok:
        ax.legend(fontsize=7)
    pol = fig.add_subplot(1, 2, 2, projection="polar")
    pol.set_theta_zero_location("N")      # 0 deg = straight ahead, up
    pol.set_theta_direction(1)            # counter-clockwise = listener's left
    for r in ok:
        if r.azimuth is not None:
            pol.plot([0, math.radians(r.azimuth)], [0, r.confidence], lw=2)
            pol.plot([math.radians(r.azimuth)], [r.confidence], "o")
    pol.set_rmax(1.0)
    pol.set_title("azimuth (radius = confidence)", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path
