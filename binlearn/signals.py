"""Source signals: synthetic speech, speech files, noise, spatial noise fields, SNR mixing.

Mono signals are (time,) float64; binaural ones (2, time) with channel 0 = left ear.
Everything is at ``fs`` (16 kHz by default).  Problems are reported as
:class:`SignalError` with a one-line message.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from scipy import fft as sp_fft
from scipy.signal import oaconvolve

from .audio import read_audio
from .hrtf import diffuse_field_noise, fibonacci_directions

__all__ = [
    "SignalError",
    "NOISE_KINDS",
    "speech_like",
    "list_speech_files",
    "load_speech",
    "speech_active_mask",
    "noise",
    "diffuse_noise",
    "point_interferer",
    "binaural_rms",
    "mix_at_snr",
    "mix_at_snr_torch",
]

NOISE_KINDS = ("white", "pink", "babble")
SPEECH_EXTS = (".wav", ".flac", ".ogg")
TARGET_RMS = 0.1  # speech level over active frames


class SignalError(ValueError):
    """Bad request for a source signal (unknown kind, missing speech folder, bad sizes...)."""


def _n_samples(duration_s: float, fs: int) -> int:
    if not np.isfinite(duration_s) or duration_s <= 0:
        raise SignalError(f"duration must be a positive number of seconds, got {duration_s!r}")
    return max(1, int(round(duration_s * fs)))


# ----------------------------------------------------------------------------- activity / level


def speech_active_mask(x: np.ndarray, fs: int = 16000, frame_s: float = 0.02, threshold_db: float = -40.0) -> np.ndarray:
    """(frames,) bool: frames whose energy is within ``threshold_db`` of the loudest frame.

    x is (time,) or (channels, time) (energy summed over channels).  Frame k covers
    samples [k*L, (k+1)*L) with L = round(frame_s*fs); a final partial frame counts.
    An all-zero signal has no active frames.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[None]
    L = max(1, int(round(frame_s * fs)))
    T = x.shape[-1]
    nf = -(-T // L)
    if nf == 0:
        return np.zeros(0, dtype=bool)
    sq = np.zeros(nf * L)
    sq[:T] = np.sum(x * x, axis=0)
    e = sq.reshape(nf, L).sum(axis=1)
    peak = e.max()
    if peak <= 0:
        return np.zeros(nf, dtype=bool)
    return e > peak * 10.0 ** (threshold_db / 10.0)


def _normalise_active(x: np.ndarray, fs: int, rms: float = TARGET_RMS) -> np.ndarray:
    """Scale so the RMS over active frames is ``rms`` (silent input returned unchanged)."""
    mask = speech_active_mask(x, fs)
    if not mask.any():
        return x
    L = int(round(0.02 * fs))
    sample_mask = np.repeat(mask, L)[: x.shape[-1]]
    e = np.mean(x[..., sample_mask] ** 2)
    return x * (rms / math.sqrt(e)) if e > 0 else x


def binaural_rms(x) -> float:
    """sqrt(mean(x**2)) over all channels and samples of (2, T) (or any) array."""
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        raise SignalError("cannot take the RMS of an empty signal")
    return float(np.sqrt(np.mean(x * x)))


# ----------------------------------------------------------------------------- synthetic speech

# Vowel formant targets F1-F4 (Hz), adult male averages (Peterson & Barney-like).
_VOWELS = np.array(
    [
        [270, 2290, 3010, 3500],  # i
        [390, 1990, 2550, 3500],  # I
        [530, 1840, 2480, 3500],  # E
        [660, 1720, 2410, 3500],  # ae
        [730, 1090, 2440, 3500],  # a
        [570, 840, 2410, 3500],  # o
        [440, 1020, 2240, 3500],  # U
        [300, 870, 2240, 3500],  # u
        [640, 1190, 2390, 3500],  # V
        [500, 1500, 2500, 3500],  # schwa
    ],
    dtype=np.float64,
)
_BANDWIDTHS = np.array([80.0, 110.0, 160.0, 250.0])
_FORMANT_GAINS = np.array([1.0, 0.8, 0.5, 0.35])  # relative peak amplitude of F1..F4

_NFFT = 512  # 32 ms frames for the frame-wise (overlap-add) filtering
_HOP = _NFFT // 2


def _syllable_plan(n: int, fs: int, rng: np.random.Generator):
    """Random word/syllable timeline covering n samples.

    Returns a list of syllables (start, stop, vowel index, loudness, fricative or None)
    where a fricative is (start, stop, centre Hz, level).  Words are 1-4 syllables
    at 3-6 syllables/s, separated by 100-400 ms pauses.
    """
    syl = []
    t = int(rng.integers(0, min(int(0.05 * fs), n - 1) + 1))  # small random lead-in, always < n
    while t < n:
        for _ in range(int(rng.integers(1, 5))):
            dur = int(fs / rng.uniform(3.0, 6.0))
            fric = None
            if rng.random() < 0.4:
                fd = int(rng.uniform(0.05, 0.15) * fs)
                # onset or coda consonant; it takes part of the syllable's time
                f0 = t if rng.random() < 0.6 else t + dur - fd
                fric = (f0, f0 + fd, rng.uniform(2500.0, 6000.0), rng.uniform(0.2, 0.6))
            syl.append((t, t + dur, int(rng.integers(len(_VOWELS))), rng.uniform(0.5, 1.0), fric))
            t += dur
        t += int(rng.uniform(0.1, 0.4) * fs)
    return syl


def _envelopes(syl, n: int, fs: int):
    """Per-sample voiced and fricative amplitude envelopes (n,) each."""
    total = max(n, max(s[1] for s in syl))
    venv = np.zeros(total)
    fenv = np.zeros(total)
    for start, stop, _, loud, fric in syl:
        vs, ve = start, stop
        if fric is not None:
            fs_, fe, _, flev = fric
            fenv[fs_:fe] += flev * loud * np.hanning(fe - fs_)
            # vowel nucleus takes the rest, overlapping the consonant a little (coarticulation)
            if fs_ == start:
                vs = start + (fe - fs_) // 2
            else:
                ve = stop - (fe - fs_) // 2
        u = (np.arange(vs, ve) - vs + 0.5) / max(1, ve - vs)
        venv[vs:ve] += loud * np.sin(np.pi * u) ** 0.6  # flat-ish top, smooth edges
    return venv[:n], fenv[:n]


def _smooth_contour(n: int, fs: int, rng, rate_hz: float) -> np.ndarray:
    """(n,) smooth random contour in [-1, 1]: random knots every 1/rate_hz s, cosine-interpolated."""
    step = max(1, int(fs / rate_hz))
    knots = rng.uniform(-1.0, 1.0, n // step + 2)
    # evaluate on a 1 ms grid and interpolate linearly: per-sample cosines are wasted work
    sub = max(1, fs // 1000)
    pos = np.arange(0, n + sub, sub) / step
    i = pos.astype(int)
    w = 0.5 - 0.5 * np.cos(np.pi * (pos - i))
    coarse = knots[i] * (1 - w) + knots[i + 1] * w
    return np.interp(np.arange(n), np.arange(coarse.size) * sub, coarse)


def _glottal_source(phase: np.ndarray) -> np.ndarray:
    """Rosenberg glottal-flow derivative evaluated at cycle phase in [0, 1).

    The abrupt closure (a step in the derivative) makes the source broadband with a
    natural ~-6 dB/octave tilt, like radiated voiced speech.
    """
    tp, tn = 0.40, 0.16  # opening and closing fractions of the period
    out = np.zeros_like(phase)
    op = phase < tp
    cl = (phase >= tp) & (phase < tp + tn)
    out[op] = (0.5 * np.pi / tp) * np.sin(np.pi * phase[op] / tp)
    out[cl] = -(0.5 * np.pi / tn) * np.sin(0.5 * np.pi * (phase[cl] - tp) / tn)
    return out


def _window() -> np.ndarray:
    """Periodic sqrt-Hann: its square sums to 1 at 50 % overlap (perfect reconstruction)."""
    return np.sqrt(np.hanning(_NFFT + 1)[:-1])


def _frames(x: np.ndarray) -> np.ndarray:
    """(..., T) -> (..., F, NFFT) half-overlapping sqrt-Hann frames (T padded).

    Frame k covers input samples [(k-1)*HOP, (k+1)*HOP), i.e. it is centred on k*HOP.
    """
    T = x.shape[-1]
    nf = -(-T // _HOP) + 1
    pad = np.zeros(x.shape[:-1] + ((nf + 1) * _HOP,))
    pad[..., _HOP : _HOP + T] = x
    blocks = pad.reshape(x.shape[:-1] + (nf + 1, _HOP))
    # hop = NFFT/2, so frame k is just blocks k and k+1 side by side (no gather needed)
    frames = np.concatenate([blocks[..., :-1, :], blocks[..., 1:, :]], axis=-1)
    return frames * _window()


def _overlap_add(frames: np.ndarray, T: int) -> np.ndarray:
    """Inverse of :func:`_frames` for (F, NFFT) frames -> (T,)."""
    frames = frames * _window()
    nf = frames.shape[0]
    out = np.zeros((nf + 1, _HOP))
    out[:-1] += frames[:, :_HOP]
    out[1:] += frames[:, _HOP:]
    return out.ravel()[_HOP : _HOP + T]


def speech_like(duration_s: float, rng: np.random.Generator, fs: int = 16000) -> np.ndarray:
    """(time,) float64 synthetic speech-like signal, RMS 0.1 over active frames.

    Voiced parts: Rosenberg glottal pulses at a smoothly moving f0 (speaker mean
    U(90, 250) Hz, contour within +-20 %) plus a little aspiration noise, shaped by
    four formants that glide between random vowel targets (frame-wise filtering with
    32 ms half-overlapping frames).  Syllables come at 3-6 Hz in words of 1-4
    syllables separated by 100-400 ms pauses; 40 % of syllables carry a 50-150 ms
    high-passed noise burst (fricative).  Band-limited to about 7 kHz.
    Deterministic for a given ``rng`` state; offline, no data files.
    """
    n = _n_samples(duration_s, fs)
    syl = _syllable_plan(n, fs, rng)
    venv, fenv = _envelopes(syl, n, fs)

    # f0: speaker mean, slow +-20 % intonation, slight declination within each word
    f0_mean = rng.uniform(90.0, 250.0)
    contour = 0.15 * _smooth_contour(n, fs, rng, rate_hz=3.0) + 0.05 * _smooth_contour(n, fs, rng, rate_hz=8.0)
    f0 = f0_mean * (1.0 + np.clip(contour, -0.2, 0.2))
    phase = np.cumsum(f0 / fs)
    phase += rng.uniform()  # random start in the glottal cycle
    voiced = _glottal_source(phase - np.floor(phase))
    voiced *= 1.0 + 0.05 * rng.standard_normal(n)  # shimmer-ish irregularity
    voiced += 0.3 * rng.standard_normal(n)  # aspiration (breathiness)
    voiced *= venv
    unvoiced = rng.standard_normal(n) * fenv

    # per-frame spectral envelopes
    V = np.fft.rfft(_frames(np.stack([voiced, unvoiced])), axis=-1)  # (2, F, K)
    nf = V.shape[1]
    freqs = np.fft.rfftfreq(_NFFT, 1.0 / fs)  # (K,)
    t_frame = np.arange(nf) * _HOP  # frame k is centred on sample k*HOP (see _frames)

    # formant tracks: linear glides between the vowel targets at syllable centres
    scale = 1.0 + 0.18 * (f0_mean - 90.0) / 160.0  # higher voice ~ shorter vocal tract
    centres = np.array([(s[0] + s[1]) / 2 for s in syl])
    targets = _VOWELS[[s[2] for s in syl]] * scale  # (S, 4)
    targets *= rng.uniform(0.95, 1.05, targets.shape)  # token-to-token variation
    formants = np.stack([np.interp(t_frame, centres, targets[:, j]) for j in range(4)], axis=1)  # (F, 4)
    bw = _BANDWIDTHS * scale
    d = (freqs[None, None, :] - formants[:, :, None]) / (0.5 * bw[None, :, None])  # (F, 4, K)
    env_v = np.sum(_FORMANT_GAINS[None, :, None] / np.sqrt(1.0 + d * d), axis=1) + 0.02  # (F, K)

    # fricative colour: high-pass at a per-burst centre frequency (held between bursts)
    fc = np.full(nf, 4000.0)
    for s in syl:
        if s[4] is not None:
            a, b = s[4][0] // _HOP, -(-s[4][1] // _HOP) + 1  # frames overlapping the burst
            fc[a:b] = s[4][2]
    env_u = 1.0 / np.sqrt(1.0 + (fc[:, None] / np.maximum(freqs[None, :], 1.0)) ** 6)  # (F, K)

    # common band limits: remove rumble below ~70 Hz, roll off above ~7 kHz
    band = 1.0 / np.sqrt(1.0 + (70.0 / np.maximum(freqs, 1.0)) ** 4) / np.sqrt(1.0 + (freqs / 7000.0) ** 16)
    Y = (V[0] * env_v + 3.0 * V[1] * env_u) * band  # fricatives ~10-20 dB under vowels
    y = _overlap_add(np.fft.irfft(Y, n=_NFFT, axis=-1), n)
    return _normalise_active(y, fs)


# ----------------------------------------------------------------------------- speech files


def list_speech_files(speech_dir) -> list[Path]:
    """Sorted list of .wav/.flac/.ogg files (any case) under ``speech_dir``, recursively."""
    d = Path(speech_dir)
    if not d.is_dir():
        raise SignalError(f"speech folder not found: {speech_dir}")
    files = sorted(p for p in d.rglob("*") if p.suffix.lower() in SPEECH_EXTS and p.is_file())
    if not files:
        raise SignalError(f"no .wav/.flac/.ogg files under {speech_dir}")
    return files


def _trim_silence(x: np.ndarray, fs: int) -> np.ndarray:
    mask = speech_active_mask(x, fs)
    if not mask.any():
        return x[:0]
    L = int(round(0.02 * fs))
    idx = np.flatnonzero(mask)
    return x[idx[0] * L : min(x.shape[-1], (idx[-1] + 1) * L)]


def load_speech(path, duration_s: float, rng: np.random.Generator, fs: int = 16000) -> np.ndarray:
    """(time,) float64 mono speech excerpt of exactly round(duration_s*fs) samples.

    The file is read at ``fs`` (channels averaged), leading/trailing silence is trimmed
    (20 ms frames more than 40 dB below the loudest), then a random crop of the
    requested length is taken; a shorter recording is zero-padded at the END.
    Scaled to RMS 0.1 over active frames.  AudioError for unreadable files,
    SignalError for a silent one.
    """
    n = _n_samples(duration_s, fs)
    x = read_audio(path, fs).astype(np.float64).mean(axis=0)
    x = _trim_silence(x, fs)
    if x.size == 0:
        raise SignalError(f"{path}: file is silent")
    if x.size > n:
        start = int(rng.integers(0, x.size - n + 1))
        x = x[start : start + n]
    else:
        x = np.concatenate([x, np.zeros(n - x.size)])
    return _normalise_active(x, fs)


# ----------------------------------------------------------------------------- noise


def _check_kind(kind: str) -> None:
    if kind not in NOISE_KINDS:
        raise SignalError(f"unknown noise kind {kind!r} (choose white, pink, babble)")


def _unit_rms(x: np.ndarray) -> np.ndarray:
    r = math.sqrt(np.mean(x * x)) if x.size else 0.0
    return x / r if r > 0 else x


_BABBLE_POOL: dict[int, np.ndarray] = {}
_POOL_TALKERS, _POOL_SECONDS = 24, 8.0


def builtin_babble_pool(fs: int) -> np.ndarray:
    """(24, 8 s) built-in talkers, generated once per process from a fixed seed.

    Rendering a fresh talker per babble voice costs more than the rest of a clip; crops of a fixed pool
    give the same babble statistics, and a fixed seed keeps output independent of worker scheduling.
    """
    if fs not in _BABBLE_POOL:
        g = np.random.default_rng(20_250_001)
        _BABBLE_POOL[fs] = np.stack([speech_like(_POOL_SECONDS, g, fs) for _ in range(_POOL_TALKERS)])
    return _BABBLE_POOL[fs]


def _talker(n: int, rng, fs: int, speech_sources) -> np.ndarray:
    """(n,) one babble talker at RMS 0.1 (active), starting at a random point of its speech."""
    if speech_sources is None:
        pool = builtin_babble_pool(fs)
        k = int(rng.integers(len(pool)))
        if n >= pool.shape[1]:  # longer than the pool: a fresh talker
            lead = int(rng.integers(0, fs // 2 + 1))
            return speech_like((n + lead) / fs, rng, fs)[lead : lead + n]
        start = int(rng.integers(0, pool.shape[1] - n + 1))
        return pool[k, start : start + n]
    return load_speech(speech_sources[int(rng.integers(len(speech_sources)))], n / fs, rng, fs)[:n]


def noise(kind: str, n: int, rng: np.random.Generator, fs: int = 16000, speech_sources=None) -> np.ndarray:
    """(n,) mono noise with unit RMS.

    kind: "white" (Gaussian), "pink" (1/f power, FFT-shaped Gaussian), or "babble"
    (6-10 independent talkers at equal level: speech_like, or random crops of the
    files in ``speech_sources`` when given).
    """
    _check_kind(kind)
    n = int(n)
    if n <= 0:
        raise SignalError(f"noise length must be positive, got {n}")
    if kind == "white":
        return _unit_rms(rng.standard_normal(n))
    if kind == "pink":
        X = np.fft.rfft(rng.standard_normal(n))
        f = np.arange(X.size, dtype=np.float64)
        X[1:] /= np.sqrt(f[1:])  # amplitude 1/sqrt(f) -> power 1/f
        X[0] = 0.0
        return _unit_rms(np.fft.irfft(X, n=n))
    sources = _check_sources(speech_sources)
    k = int(rng.integers(6, 11))
    return _unit_rms(sum(_talker(n, rng, fs, sources) for _ in range(k)))


def _check_sources(speech_sources):
    if speech_sources is None:
        return None
    sources = list(speech_sources)
    if not sources:
        raise SignalError("babble needs at least one speech file (empty speech_sources given)")
    return sources


def diffuse_noise(
    hrtf, kind: str, n: int, rng: np.random.Generator, n_dirs: int = 256, fs: int = 16000, speech_sources=None
) -> np.ndarray:
    """(2, n) spatially diffuse binaural noise with unit binaural RMS.

    white/pink: Gaussian noise whose 2x2 cross-spectrum equals that of ``n_dirs`` independent sources from
    near-uniform directions over the sphere (Fibonacci lattice) filtered by the HRTF --
    statistically the same as summing the filtered sources (a sum of independent Gaussians is Gaussian),
    at the cost of one FFT instead of ``n_dirs`` convolutions (the spectra are cached per listener).
    babble: not Gaussian, so 8-12 talkers are rendered from as many random directions through ``hrtf.hrir``.
    """
    _check_kind(kind)
    n = int(n)
    if n <= 0:
        raise SignalError(f"noise length must be positive, got {n}")
    if int(n_dirs) < 1:
        raise SignalError(f"n_dirs must be at least 1, got {n_dirs}")
    sources = _check_sources(speech_sources)
    if kind == "babble":
        k = int(rng.integers(8, 13))
        az, el = fibonacci_directions(k, rng)
        h = np.asarray(hrtf.hrir(az, el), dtype=np.float64)  # (k, 2, taps)
        m = n + h.shape[-1] - 1
        talkers = np.stack([_talker(m, rng, fs, sources) for _ in range(k)])  # (k, m)
        # sum_d talker_d * h_d in the frequency domain: one batched FFT instead of k convolutions
        size = sp_fft.next_fast_len(m + h.shape[-1] - 1, real=True)
        spec = np.einsum("kf,kef->ef", sp_fft.rfft(talkers, size, axis=-1), sp_fft.rfft(h, size, axis=-1))
        out = sp_fft.irfft(spec, size, axis=-1)[:, h.shape[-1] - 1:m]  # the 'valid' part: n samples
        return out / binaural_rms(out)
    weights = None
    if kind == "pink":  # amplitude 1 / sqrt(f), no DC
        weights = np.zeros(n // 2 + 1)
        weights[1:] = 1.0 / np.sqrt(np.arange(1, n // 2 + 1, dtype=np.float64))
    out = diffuse_field_noise(hrtf, n, rng, weights, n_dirs=int(n_dirs))
    return out / binaural_rms(out)


def point_interferer(
    hrtf, kind: str, n: int, az_deg: float, rng: np.random.Generator, fs: int = 16000, speech_sources=None
) -> np.ndarray:
    """(2, n) one noise source at azimuth ``az_deg`` (elevation 0) through the HRTF
    (anechoic, direct path only), unit binaural RMS."""
    _check_kind(kind)
    n = int(n)
    if n <= 0:
        raise SignalError(f"noise length must be positive, got {n}")
    h = np.asarray(hrtf.hrir(np.array([float(az_deg)]), np.array([0.0])), dtype=np.float64)[0]  # (2, taps)
    s = noise(kind, n + h.shape[-1] - 1, rng, fs, speech_sources)
    out = oaconvolve(s[None, :], h, mode="valid", axes=-1)
    return out / binaural_rms(out)


# ----------------------------------------------------------------------------- mixing


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """speech + g*noise with g set so 10*log10(E_speech / E(g*noise)) == snr_db.

    speech, noise: (2, T); energies are summed over BOTH ears (binaural SNR).
    snr_db = +inf returns a copy of the speech.
    """
    speech = np.asarray(speech)
    noise = np.asarray(noise)
    if speech.shape != noise.shape:
        raise SignalError(f"speech and noise shapes differ: {speech.shape} vs {noise.shape}")
    if np.isnan(snr_db) or snr_db == -np.inf:
        raise SignalError(f"SNR must be a number or +inf, got {snr_db}")
    if snr_db == np.inf:
        return speech.copy()
    es = float(np.sum(np.square(speech, dtype=np.float64)))
    en = float(np.sum(np.square(noise, dtype=np.float64)))
    if es <= 0:
        raise SignalError("cannot set an SNR: speech is silent")
    if en <= 0:
        raise SignalError("cannot set an SNR: noise is silent")
    g = math.sqrt(es / (en * 10.0 ** (snr_db / 10.0)))
    return speech + g * noise


def mix_at_snr_torch(speech, noise, snr_db):
    """Batched torch version: speech, noise (B, 2, T), snr_db (B,) or scalar -> (B, 2, T).

    Energies per item summed over both ears; a non-finite SNR (+inf) leaves that
    item's speech unchanged, as does all-zero noise (no NaN).  The gain is computed
    without gradient, from float64 energies.
    """
    import torch

    if speech.shape != noise.shape:
        raise SignalError(f"speech and noise shapes differ: {tuple(speech.shape)} vs {tuple(noise.shape)}")
    B = speech.shape[0]
    snr = torch.as_tensor(snr_db, device=speech.device, dtype=torch.float64).reshape(-1)
    if snr.numel() == 1:
        snr = snr.expand(B)
    if snr.shape != (B,):
        raise SignalError(f"snr_db must have one value per batch item ({B}), got shape {tuple(snr.shape)}")
    dims = tuple(range(1, speech.dim()))
    es = speech.detach().double().pow(2).sum(dims)
    en = noise.detach().double().pow(2).sum(dims)
    finite = torch.isfinite(snr)
    safe_snr = torch.where(finite, snr, torch.zeros_like(snr))
    g = torch.sqrt(es / (en.clamp_min(1e-30) * torch.pow(10.0, safe_snr / 10.0)))
    g = torch.where(finite & (en > 0), g, torch.zeros_like(g))
    shape = (B,) + (1,) * (speech.dim() - 1)
    return speech + g.to(speech.dtype).reshape(shape) * noise
