"""Dataset simulation: binaural speech in random shoebox rooms, heads and directions.

Per clip we write three 16 kHz wav files (and optionally the RIR):

* ``clean``  - direct path only through the listener's HRTF (anechoic, noise-free): the distillation teacher input;
* ``reverb`` - the same speech through the full binaural room impulse response;
* ``noise``  - binaural noise (diffuse field, sometimes plus a point interferer), unit RMS, rendered
  separately so training can remix it at a random SNR.

Every clip draws its randomness from ``np.random.default_rng([seed, clip_index])``, so the output is
byte-identical whatever the number of workers. Each finished clip leaves a small JSON record; the
``metadata.csv`` is assembled from those at the end (atomically), which is what makes ``resume`` possible.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import json
import math
import multiprocessing as mp
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import soundfile as sf
from scipy import fft as sp_fft

from .audio import atomic_write_text, write_wav
from .hrtf import HRTF, load_hrtf, sample_listener
from .room import binaural_rir, direct_rir, sample_geometry
from .signals import NOISE_KINDS, builtin_babble_pool, diffuse_noise, list_speech_files, load_speech, point_interferer, speech_like

FS = 16000
SPLITS = ("train", "val", "test")
METADATA_COLUMNS = [
    "clip_id", "split", "clean_path", "reverb_path", "noise_path", "rir_path",
    "azimuth_deg", "elevation_deg", "distance_m", "room_x_m", "room_y_m", "room_z_m",
    "rt60_s", "drr_db", "listener_id", "head_radius_m", "ear_azimuth_deg", "hrtf_source",
    "speech_source", "noise_kind", "interferer_azimuth_deg", "snr_min_db", "snr_max_db", "seed",
]


class SimulationError(ValueError):
    """Bad simulation parameters or inputs (reported as one line before any work)."""


@dataclass
class SimConfig:
    """Everything that determines a simulated dataset (saved as ``config.json`` next to it)."""

    clips: int = 400
    seed: int = 0
    splits: tuple[float, float, float] = (0.8, 0.1, 0.1)
    duration_s: float = 2.0
    speech_dir: str | None = None          # None: built-in speech-like generator
    hrtf: tuple[str, ...] = ()             # SOFA files; empty: random spherical heads
    listeners_per_split: tuple[int, int, int] = (24, 6, 6)
    rt60_range: tuple[float, float] = (0.0, 1.0)   # 0 = anechoic
    snr_range: tuple[float, float] = (-10.0, 20.0)
    noise_kinds: tuple[str, ...] = NOISE_KINDS
    interferer_prob: float = 0.3
    azimuth_range: tuple[float, float] = (-90.0, 90.0)
    full_circle: bool = False
    distance_range: tuple[float, float] = (1.0, 3.0)
    room_min: tuple[float, float, float] = (4.0, 3.5, 2.5)
    room_max: tuple[float, float, float] = (10.0, 8.0, 4.0)
    save_rirs: bool = False


def validate_config(cfg: SimConfig) -> None:
    """Raise :class:`SimulationError` (one line) for parameters that cannot work, before any work starts."""
    if cfg.clips < 1:
        raise SimulationError(f"--clips must be at least 1 (got {cfg.clips})")
    if len(cfg.splits) != 3 or any(f < 0 for f in cfg.splits) or not math.isclose(sum(cfg.splits), 1.0, abs_tol=1e-6):
        raise SimulationError(f"--splits must be three non-negative fractions summing to 1 (got {cfg.splits})")
    if cfg.duration_s < 0.1 or cfg.duration_s > 60:
        raise SimulationError(f"--duration must be between 0.1 and 60 s (got {cfg.duration_s})")
    lo, hi = cfg.rt60_range
    if lo < 0 or hi < 0:
        raise SimulationError(f"RT60 must be non-negative (got {lo}..{hi} s); use 0 for anechoic")
    if lo > hi:
        raise SimulationError(f"RT60 range is reversed ({lo}..{hi} s)")
    if hi > 3.0:
        raise SimulationError(f"RT60 above 3 s is outside the simulator's range (got {hi} s)")
    if 0 < lo < 0.1 or 0 < hi < 0.1:
        raise SimulationError(f"RT60 below 0.1 s is not physical for a room (got {lo}..{hi} s); use 0 for anechoic")
    if cfg.snr_range[0] > cfg.snr_range[1]:
        raise SimulationError(f"SNR range is reversed ({cfg.snr_range[0]}..{cfg.snr_range[1]} dB)")
    bad = [k for k in cfg.noise_kinds if k not in NOISE_KINDS]
    if bad or not cfg.noise_kinds:
        raise SimulationError(f"unknown noise kind {bad[0] if bad else '(none)'!r} (choose from {', '.join(NOISE_KINDS)})")
    a0, a1 = cfg.azimuth_range
    if a0 > a1 or a0 < -180 or a1 > 180:
        raise SimulationError(f"azimuth range must lie within -180..180 and be increasing (got {a0}..{a1})")
    if not cfg.full_circle and (a0 < -90 or a1 > 90):
        raise SimulationError(f"azimuth range {a0}..{a1} leaves the frontal plane; pass --full-circle")
    d0, d1 = cfg.distance_range
    if d0 <= 0.2 or d0 > d1:
        raise SimulationError(f"talker distance range must be increasing and above 0.2 m (got {d0}..{d1} m)")
    if any(a <= 0 or a > b for a, b in zip(cfg.room_min, cfg.room_max)):
        raise SimulationError(f"room size range invalid (min {cfg.room_min}, max {cfg.room_max})")
    # Head and talker both keep 0.5 m from the walls; the smallest room must still fit the farthest talker.
    lx, ly, _ = cfg.room_min
    reach = math.hypot(lx - 1.0, ly - 1.0)
    if d1 > reach:
        raise SimulationError(
            f"room too small for the talker distance: a {lx:g}x{ly:g} m room fits at most {reach:.2f} m (asked {d1:g} m)")
    if not 0 <= cfg.interferer_prob <= 1:
        raise SimulationError(f"interferer probability must be in [0, 1] (got {cfg.interferer_prob})")
    if cfg.speech_dir is not None:
        try:
            list_speech_files(cfg.speech_dir)
        except ValueError as e:
            raise SimulationError(str(e)) from None
    for path in cfg.hrtf:
        try:
            load_hrtf(path)
        except ValueError as e:
            raise SimulationError(str(e)) from None


# ---------------------------------------------------------------------------------------------------------------
# Who goes where: splits with disjoint listeners, rooms and speech


def assign_splits(n: int, fractions: Sequence[float], seed: int) -> list[str]:
    """Split label per clip index; counts follow the fractions, order shuffled by ``seed``."""
    counts = [int(round(f * n)) for f in fractions]
    counts[0] = n - sum(counts[1:])
    labels = np.repeat(np.arange(3), counts)
    np.random.default_rng([seed, 1_000_003]).shuffle(labels)
    return [SPLITS[i] for i in labels]


def split_speech_files(files: list[Path], root: Path, fractions: Sequence[float], seed: int) -> dict[str, list[Path]]:
    """Partition speech files per split. Grouped by top-level subfolder (a speaker in LibriSpeech) when there
    are at least 3 groups, so no talker appears in two splits; otherwise by file."""
    groups: dict[str, list[Path]] = {}
    for f in files:
        rel = f.relative_to(root).parts
        groups.setdefault(rel[0] if len(rel) > 1 else str(f), []).append(f)
    keys = sorted(groups)
    if len(keys) < 3:
        keys = [str(f) for f in files]
        groups = {str(f): [f] for f in files}
    rng = np.random.default_rng([seed, 2_000_003])
    keys = [keys[i] for i in rng.permutation(len(keys))]
    out: dict[str, list[Path]] = {s: [] for s in SPLITS}
    if len(keys) < 3:
        # Too little material to keep splits disjoint: share it and say so in the metadata (speech_source).
        return {s: list(files) for s in SPLITS}
    counts = [max(1, int(round(f * len(keys)))) if f > 0 else 0 for f in fractions]
    counts[0] = max(1, len(keys) - sum(counts[1:]))
    start = 0
    for s, c in zip(SPLITS, counts):
        for k in keys[start:start + c]:
            out[s].extend(groups[k])
        start += c
    for s in SPLITS:  # a split with no group left borrows from train rather than failing
        if not out[s]:
            out[s] = list(out["train"])
    return out


def listener_for(cfg: SimConfig, split: str, rng: np.random.Generator) -> tuple[str, HRTF]:
    """Pick the clip's listener from its split's pool (pools are disjoint across splits)."""
    si = SPLITS.index(split)
    if cfg.hrtf:
        files = list(cfg.hrtf)
        if len(files) >= 3:
            # Deal files to splits round-robin so each split has its own heads.
            pool = [f for i, f in enumerate(files) if i % 3 == si] or files
        else:
            pool = files
        path = pool[int(rng.integers(len(pool)))]
        return f"sofa:{Path(path).name}", _cached_sofa(path)
    k = int(rng.integers(cfg.listeners_per_split[si]))
    return f"{split}-head{k:03d}", _listener(cfg.seed, si, k)


@functools.lru_cache(maxsize=256)
def _listener(seed: int, split_index: int, k: int) -> HRTF:
    """Listener k of a split: a pure function of its seed, so caching it (its construction designs
    filters, and per-listener caches such as the diffuse-field spectra hang off it) changes nothing."""
    return sample_listener(np.random.default_rng([seed, 3_000_017, split_index, k]))


_SOFA_CACHE: dict[str, HRTF] = {}


def _cached_sofa(path: str) -> HRTF:
    if path not in _SOFA_CACHE:
        _SOFA_CACHE[path] = load_hrtf(path)
    return _SOFA_CACHE[path]


# ---------------------------------------------------------------------------------------------------------------
# One clip


def _convolve_heads(x: np.ndarray, irs: list[np.ndarray], n: int) -> list[np.ndarray]:
    """First n samples of x (T,) convolved with each (2, L_i) response, sharing one FFT of x.

    The FFT length covers the longest full linear convolution, so nothing wraps around into [0, n).
    """
    size = sp_fft.next_fast_len(x.size + max(ir.shape[1] for ir in irs) - 1, real=True)
    spec = sp_fft.rfft(x, size)
    return [sp_fft.irfft(sp_fft.rfft(ir, size, axis=-1) * spec, size, axis=-1)[:, :n] for ir in irs]


def _uniform(rng: np.random.Generator, lo_hi: Sequence[float]) -> float:
    lo, hi = lo_hi
    return float(lo) if hi == lo else float(rng.uniform(lo, hi))


def render_clip(cfg: SimConfig, index: int, split: str, speech_pool: list[Path] | None) -> dict:
    """Render clip ``index``: returns arrays (clean, reverb, noise, rir) and its metadata row."""
    rng = np.random.default_rng([cfg.seed, index])
    n = int(round(cfg.duration_s * FS))
    listener_id, head = listener_for(cfg, split, rng)

    room = np.array([_uniform(rng, (a, b)) for a, b in zip(cfg.room_min, cfg.room_max)])
    rt60 = _uniform(rng, cfg.rt60_range)
    if rt60 < 0.1:
        rt60 = 0.0  # below any real room: the bottom of the range becomes anechoic clips
    az = _uniform(rng, cfg.azimuth_range)
    head_pos, yaw, src = sample_geometry(rng, room, cfg.distance_range, az, 0.0)
    distance = float(np.linalg.norm(src - head_pos))

    if speech_pool is None:
        speech = speech_like(cfg.duration_s, rng, FS)
        speech_source = "builtin:speech_like"
    else:
        path = speech_pool[int(rng.integers(len(speech_pool)))]
        speech = load_speech(path, cfg.duration_s, rng, FS)
        speech_source = str(path)
    speech = speech[:n]

    rir, info = binaural_rir(room, src, head_pos, yaw, rt60, head, rng=rng, fs=FS)
    d_rir = direct_rir(room, src, head_pos, yaw, head, fs=FS)  # short: the direct path only
    reverb, clean = _convolve_heads(speech, [rir, d_rir], n)

    kind = cfg.noise_kinds[int(rng.integers(len(cfg.noise_kinds)))]
    babble_src = speech_pool
    noise = diffuse_noise(head, kind, n, rng, fs=FS, speech_sources=babble_src)
    interferer_az = float("nan")
    if rng.random() < cfg.interferer_prob:
        # An interferer at least 20 degrees away from the talker so the label stays unambiguous.
        lo, hi = (-180.0, 180.0) if cfg.full_circle else (-90.0, 90.0)
        for _ in range(100):
            cand = float(rng.uniform(lo, hi))
            if abs((cand - az + 180) % 360 - 180) >= 20:
                interferer_az = cand
                break
        if not math.isnan(interferer_az):
            ikind = cfg.noise_kinds[int(rng.integers(len(cfg.noise_kinds)))]
            inr_db = float(rng.uniform(-6.0, 0.0))  # interferer level relative to the diffuse noise
            noise = noise + 10 ** (inr_db / 20) * point_interferer(head, ikind, n, interferer_az, rng, fs=FS,
                                                                    speech_sources=babble_src)
    noise = noise / max(float(np.sqrt(np.mean(noise ** 2))), 1e-12)

    # Level: reverberant speech at RMS 0.05 (both ears), the clean teacher scaled by the same gain so that
    # the direct path keeps its physical level relative to the reverberant mixture.
    g = 0.05 / max(float(np.sqrt(np.mean(reverb ** 2))), 1e-12)
    row = {
        "clip_id": f"{index:06d}", "split": split,
        "azimuth_deg": round(az, 4), "elevation_deg": 0.0, "distance_m": round(distance, 4),
        "room_x_m": round(room[0], 4), "room_y_m": round(room[1], 4), "room_z_m": round(room[2], 4),
        "rt60_s": round(rt60, 4), "drr_db": round(float(info["drr_db"]), 3),
        "listener_id": listener_id, "head_radius_m": round(float(getattr(head, "radius", float("nan"))), 5),
        "ear_azimuth_deg": round(float(getattr(head, "ear_az_deg", float("nan"))), 3),
        "hrtf_source": head.name, "speech_source": speech_source, "noise_kind": kind,
        "interferer_azimuth_deg": round(interferer_az, 3), "snr_min_db": cfg.snr_range[0],
        "snr_max_db": cfg.snr_range[1], "seed": cfg.seed,
    }
    return {"clean": (g * clean).astype(np.float32), "reverb": (g * reverb).astype(np.float32),
            "noise": (0.05 * noise).astype(np.float32), "rir": rir.astype(np.float32), "row": row}


def _clip_files(index: int, save_rirs: bool) -> dict[str, str]:
    stem = f"clips/{index:06d}"
    files = {"clean_path": f"{stem}_clean.wav", "reverb_path": f"{stem}_reverb.wav", "noise_path": f"{stem}_noise.wav",
             "rir_path": f"{stem}_rir.wav" if save_rirs else ""}
    return files


def _clip_done(out: Path, index: int, cfg: SimConfig) -> bool:
    """Whether clip ``index`` is complete: its JSON record parses and every audio file is a
    readable 2-channel 16 kHz wav of the right length. (Clip files skip fsync for speed, so
    after a power cut a file may be empty; ``--resume`` then renders that clip again.)"""
    try:
        json.loads((out / f"clips/{index:06d}.json").read_text())
        files = [p for p in _clip_files(index, cfg.save_rirs).values() if p]
        n = int(round(cfg.duration_s * FS))
        for p in files:
            info = sf.info(str(out / p))
            if info.channels != 2 or info.samplerate != FS or (not p.endswith("_rir.wav") and info.frames != n):
                return False
    except (OSError, ValueError, RuntimeError):  # missing, unparsable, unreadable (soundfile: RuntimeError)
        return False
    return True


def _work(args) -> int:
    cfg, out, index, split, pool = args
    res = render_clip(cfg, index, split, pool)
    files = _clip_files(index, cfg.save_rirs)
    # Atomic (temp + rename) but not fsynced: thousands of fsyncs would cost more than the
    # rendering; --resume checks every file (see _clip_done) and metadata.csv is fsynced.
    write_wav(out / files["clean_path"], res["clean"], FS, durable=False)
    write_wav(out / files["reverb_path"], res["reverb"], FS, durable=False)
    write_wav(out / files["noise_path"], res["noise"], FS, durable=False)
    if cfg.save_rirs:
        write_wav(out / files["rir_path"], res["rir"], FS, durable=False)
    row = {**res["row"], **files}
    # The JSON record is written last: its presence means the clip is complete (used by --resume).
    atomic_write_text(out / f"clips/{index:06d}.json", json.dumps(row, sort_keys=True), durable=False)
    return index


def _config_json(cfg: SimConfig) -> str:
    return json.dumps(dataclasses.asdict(cfg), indent=2, sort_keys=True) + "\n"


def simulate(out_dir: str | os.PathLike, cfg: SimConfig, *, workers: int = 1, overwrite: bool = False,
             resume: bool = False, progress: Callable[[int, int], None] | None = None) -> Path:
    """Simulate ``cfg.clips`` clips into ``out_dir`` and return the path of its ``metadata.csv``.

    ``workers`` processes render clips in parallel (output is identical for any count). ``resume`` finishes an
    interrupted run with the same configuration; ``overwrite`` replaces an existing non-empty directory.
    ``progress(done, total)`` is called after each clip.
    """
    validate_config(cfg)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise SimulationError(f"output path exists and is not a directory: {out}")
    if workers < 1:
        raise SimulationError(f"--workers must be at least 1 (got {workers})")
    existing = out.is_dir() and any(out.iterdir())
    if existing and resume:
        old = out / "config.json"
        if not old.is_file():
            raise SimulationError(f"cannot resume: {out} has no config.json from a binlearn simulate run")
        if old.read_text() != _config_json(cfg):
            raise SimulationError(f"cannot resume: {out} was simulated with a different configuration")
    elif existing and not overwrite:
        raise SimulationError(f"output directory {out} is not empty (use --overwrite to replace it, or --resume)")
    elif existing and overwrite:
        if not (out / "config.json").is_file() and not (out / "metadata.csv").is_file():
            # Refuse to wipe a directory that binlearn did not create.
            raise SimulationError(f"refusing to overwrite {out}: it does not look like a binlearn dataset")
        shutil.rmtree(out)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.json", _config_json(cfg))

    labels = assign_splits(cfg.clips, cfg.splits, cfg.seed)
    pools: dict[str, list[Path] | None] = {s: None for s in SPLITS}
    if cfg.speech_dir is not None:
        root = Path(cfg.speech_dir)
        pools = split_speech_files(list_speech_files(root), root, cfg.splits, cfg.seed)
    todo = [i for i in range(cfg.clips) if not (resume and _clip_done(out, i, cfg))]
    jobs = [(cfg, out, i, labels[i], pools[labels[i]]) for i in todo]
    done = cfg.clips - len(todo)
    if progress:
        progress(done, cfg.clips)
    if workers == 1 or len(jobs) <= 1:
        for j in jobs:
            _work(j)
            done += 1
            if progress:
                progress(done, cfg.clips)
    else:
        # Fork keeps start-up cheap; each clip seeds its own RNG, so scheduling order cannot change results.
        if cfg.speech_dir is None and "babble" in cfg.noise_kinds:
            builtin_babble_pool(FS)  # built once here and inherited by the forked workers (~0.7 s each otherwise)
        ctx = mp.get_context("fork" if sys.platform != "win32" else "spawn")
        with ctx.Pool(workers, initializer=_limit_threads) as pool:
            for _ in pool.imap_unordered(_work, jobs, chunksize=1):
                done += 1
                if progress:
                    progress(done, cfg.clips)
    return write_metadata(out, cfg.clips)


def _limit_threads() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"


def write_metadata(out: Path, n: int) -> Path:
    """Assemble ``metadata.csv`` from the per-clip JSON records (atomic write)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=METADATA_COLUMNS, lineterminator="\n")
    w.writeheader()
    for i in range(n):
        rec = out / f"clips/{i:06d}.json"
        if not rec.is_file():
            raise SimulationError(f"clip {i} is missing in {out}; re-run with --resume")
        w.writerow(json.loads(rec.read_text()))
    path = out / "metadata.csv"
    atomic_write_text(path, buf.getvalue())
    return path
