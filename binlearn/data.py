"""Reading a simulated dataset and building training batches (with on-the-fly noise remixing).

A dataset is a folder with ``metadata.csv`` and the clip wavs written by :func:`binlearn.simulate.simulate`.
Label-free use (pretraining) reads only the path columns: azimuth columns may be absent.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .audio import read_audio
from .signals import mix_at_snr_torch as mix_at_snr  # binaural SNR per item, inf = no noise

PATH_COLUMNS = ("clip_id", "split", "clean_path", "reverb_path", "noise_path")


class DataError(ValueError):
    """A dataset folder is missing, malformed or lacks what the task needs."""


@dataclass
class Clips:
    """All clips of one split held in memory. Waveforms are (n, 2, time) float32 at 16 kHz."""

    ids: list[str]
    clean: torch.Tensor
    reverb: torch.Tensor
    noise: torch.Tensor
    azimuth: torch.Tensor | None      # (n,) degrees, None when loaded without labels
    rows: list[dict]                  # metadata rows (without label columns when labels=False)

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, idx) -> "Clips":
        idx = torch.as_tensor(idx, dtype=torch.long)
        return Clips([self.ids[i] for i in idx.tolist()], self.clean[idx], self.reverb[idx], self.noise[idx],
                     None if self.azimuth is None else self.azimuth[idx], [self.rows[i] for i in idx.tolist()])


def read_metadata(data_dir: str | Path) -> list[dict]:
    """Rows of ``metadata.csv`` as dicts; :class:`DataError` if the folder or file is missing/invalid."""
    data_dir = Path(data_dir)
    path = data_dir / "metadata.csv"
    if not data_dir.is_dir():
        raise DataError(f"dataset folder not found: {data_dir}")
    if not path.is_file():
        raise DataError(f"{data_dir} has no metadata.csv (create one with `binlearn simulate`)")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise DataError(f"{path} lists no clips")
    missing = [c for c in PATH_COLUMNS if c not in rows[0]]
    if missing:
        raise DataError(f"{path} lacks column(s) {', '.join(missing)}")
    return rows


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    """Crop or zero-pad (2, t) to (2, n)."""
    if x.shape[1] >= n:
        return x[:, :n]
    return np.pad(x, ((0, 0), (0, n - x.shape[1])))


def load_split(data_dir: str | Path, split: str, *, labels: bool) -> Clips:
    """Load every clip of ``split`` into memory. With ``labels=False`` azimuth columns are never touched,
    which is how pretraining stays label-free."""
    data_dir = Path(data_dir)
    rows = [r for r in read_metadata(data_dir) if r["split"] == split]
    if not rows:
        raise DataError(f"{data_dir}/metadata.csv has no '{split}' clips")
    if labels and "azimuth_deg" not in rows[0]:
        raise DataError(f"{data_dir}/metadata.csv has no azimuth_deg column: labels are needed here")
    waves = {"clean": [], "reverb": [], "noise": []}
    n = None
    for r in rows:
        for k in waves:
            x = read_audio(data_dir / r[f"{k}_path"], mono_ok=False)
            n = x.shape[1] if n is None else n
            waves[k].append(_fit(x, n))
    az = torch.tensor([float(r["azimuth_deg"]) for r in rows], dtype=torch.float32) if labels else None
    keep = PATH_COLUMNS + ("rt60_s", "noise_kind", "drr_db", "listener_id")
    if labels:
        keep = keep + ("azimuth_deg",)
    slim = [{k: r[k] for k in keep if k in r} for r in rows]
    return Clips([r["clip_id"] for r in rows], *(torch.from_numpy(np.stack(waves[k])) for k in waves), az, slim)


def label_subset(clips: Clips, fraction: float, seed: int) -> Clips:
    """A random ``fraction`` of the clips (at least one), chosen reproducibly from ``seed``."""
    if not 0 < fraction <= 1:
        raise DataError(f"--label-fraction must be in (0, 1] (got {fraction})")
    if fraction == 1:
        return clips
    k = max(1, int(math.ceil(fraction * len(clips))))
    g = torch.Generator().manual_seed(int(seed) + 7919)
    idx = torch.randperm(len(clips), generator=g)[:k].sort().values
    return clips.subset(idx)


def augment(reverb: torch.Tensor, noise: torch.Tensor, snr_range: tuple[float, float],
            generator: torch.Generator) -> torch.Tensor:
    """The pretraining/fine-tuning input: reverberant speech + noise at a random SNR, random gain and a random
    spectral tilt that is identical in both ears (so spatial cues are unchanged). (batch, 2, time) in and out."""
    b = reverb.shape[0]
    dev = reverb.device
    u = torch.rand(b, 3, generator=generator).to(dev)
    snr = snr_range[0] + (snr_range[1] - snr_range[0]) * u[:, 0]
    x = mix_at_snr(reverb, noise, snr)
    # First-order tilt x[t] + a*x[t-1], a in [-0.5, 0.5]: about +-6 dB across the band.
    a = (u[:, 1] - 0.5)[:, None, None]
    x = x + a * torch.nn.functional.pad(x, (1, 0))[..., :-1]
    gain_db = -12 + 18 * u[:, 2]
    return x * torch.pow(10.0, gain_db / 20)[:, None, None]


def random_crop(waves: list[torch.Tensor], length: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Crop the same random window of ``length`` samples from each (batch, 2, time) tensor."""
    t = waves[0].shape[-1]
    if length >= t:
        return waves
    start = int(torch.randint(0, t - length + 1, (1,), generator=generator))
    return [w[..., start:start + length] for w in waves]
