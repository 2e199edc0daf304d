"""Head-related transfer functions: a structural spherical head and measured SOFA sets.

Conventions: fs = 16000 Hz, channel 0 = left ear, channel 1 = right ear; azimuth in
degrees, 0 = ahead, positive = listener's left (SOFA/AES69); elevation positive up.
Head frame: x forward, y left, z up.

Every HRTF answers three questions:

* ``transfer(az, el, n_fft)``: ear spectra relative to the head centre (the near ear
  therefore has a *negative* delay);
* ``hrir(az, el, n_taps)``: causal impulse responses, delayed by ``bulk_delay`` samples;
* ``render(az, el, delay_s, gain, length)``: the sum of many arrivals at the two ears,
  vectorised so that 1e4-1e5 arrivals (a room impulse response) take milliseconds.
"""
from __future__ import annotations

import os
import weakref
from fractions import Fraction

import numpy as np
from scipy import ndimage, signal, sparse

__all__ = [
    "HRTFError",
    "HRTF",
    "SphericalHead",
    "SofaHRTF",
    "sample_listener",
    "fibonacci_directions",
    "diffuse_spectra",
    "diffuse_cholesky",
    "diffuse_field_noise",
    "load_hrtf",
    "write_sofa",
]

FS = 16000
C_SOUND = 343.0

# Windowed-sinc fractional delay: 32 taps (offsets -15..16 around floor(position)),
# Kaiser window, phase quantised to 1/512 sample (0.12 us, far below any ITD of interest).
_SINC_HALF = 16
_SINC_OFFSETS = np.arange(-_SINC_HALF + 1, _SINC_HALF + 1)
_SINC_PHASES = 512
_KAISER_BETA = 7.0


def _make_sinc_table() -> np.ndarray:
    """(_SINC_PHASES + 1, 32) table: row p holds the kernel for fractional part p/_SINC_PHASES."""
    frac = np.arange(_SINC_PHASES + 1)[:, None] / _SINC_PHASES
    x = _SINC_OFFSETS[None, :] - frac
    arg = np.clip(1.0 - (x / _SINC_HALF) ** 2, 0.0, None)
    window = np.i0(_KAISER_BETA * np.sqrt(arg)) / np.i0(_KAISER_BETA)
    return np.sinc(x) * window


_SINC_TABLE = _make_sinc_table()


class HRTFError(ValueError):
    """Invalid HRTF parameters, directions or files."""


def _directions(az_deg, el_deg) -> tuple[np.ndarray, np.ndarray]:
    """Broadcast az/el (scalars or (n,)) to two float64 (n,) arrays."""
    az = np.atleast_1d(np.asarray(az_deg, dtype=np.float64))
    el = np.atleast_1d(np.asarray(el_deg, dtype=np.float64))
    try:
        az, el = np.broadcast_arrays(az, el)
    except ValueError:
        raise HRTFError(f"azimuth shape {az.shape} and elevation shape {el.shape} do not match") from None
    if az.ndim != 1:
        raise HRTFError(f"directions must be scalars or 1-D arrays, got shape {az.shape}")
    if not (np.all(np.isfinite(az)) and np.all(np.isfinite(el))):
        raise HRTFError("directions must be finite")
    if np.any(np.abs(el) > 90.0 + 1e-9):
        raise HRTFError("elevation must lie in [-90, 90] degrees")
    return az.copy(), el.copy()


def unit_vectors(az_deg, el_deg) -> np.ndarray:
    """(n, 3) unit vectors in the head frame (x ahead, y left, z up)."""
    az = np.deg2rad(np.asarray(az_deg, dtype=np.float64))
    el = np.deg2rad(np.asarray(el_deg, dtype=np.float64))
    cos_el = np.cos(el)  # computed once: this runs for every arrival of a RIR
    return np.stack([cos_el * np.cos(az), cos_el * np.sin(az), np.sin(el)], axis=-1)


def _scatter(rows: np.ndarray, pos: np.ndarray, weights: np.ndarray, n_rows: int, length: int,
             interp: str = "sinc", chunk: int | None = None) -> np.ndarray:
    """Place band-limited impulses at fractional sample positions.

    rows (m,) int row index, pos (m,) float position in samples, weights (k, m): k weight
    sets sharing the positions (e.g. low-pass and high-pass weights). interp "sinc": 32-tap
    windowed sinc; "nearest": one tap at the nearest sample (32x cheaper; for statistically
    placed arrivals such as a late reverberation tail, where +-31 us timing jitter is moot).
    Returns (k, n_rows, length); parts of kernels falling outside [0, length) are dropped.
    """
    k = weights.shape[0]
    if interp == "nearest":
        idx = np.rint(pos).astype(np.intp)
        ok = (idx >= 0) & (idx < length)
        if not ok.all():
            idx, rows, weights = idx[ok], rows[ok], weights[:, ok]
        idx += rows * length  # flat index into (n_rows * length)
        out = np.zeros((k, n_rows, length))
        flat_out = out.reshape(k, n_rows * length)
        for j in range(k):  # unbuffered add: no index or weight copies (RIR-sized temporaries)
            np.add.at(flat_out[j], idx, weights[j])
        return out
    if interp != "sinc":
        raise HRTFError(f"interp must be 'sinc' or 'nearest', got {interp!r}")
    pad = 2 * _SINC_HALF  # guard band: every kept kernel lies fully inside the padded row
    width = length + 2 * pad
    base = np.floor(pos)
    # kernels entirely outside the output contribute nothing
    ok = (base >= -_SINC_HALF - 1) & (base <= length + _SINC_HALF - 1)
    if not ok.all():  # (the copies cost more than the test when nothing is dropped)
        rows, pos, base, weights = rows[ok], pos[ok], base[ok], weights[:, ok]
    out = np.zeros((k, n_rows, width))
    if pos.size == 0:
        return out[:, :, pad:pad + length]
    n_taps = _SINC_OFFSETS.size
    phase = np.rint((pos - base) * _SINC_PHASES).astype(np.intp)
    first = base.astype(np.intp) + (pad + _SINC_OFFSETS[0])  # sample of each kernel's first tap
    if pos.size <= 64:  # a few arrivals (a direct path): building a sparse matrix costs more
        flat = ((rows * width + first)[:, None] + np.arange(n_taps)).ravel()
        ker = _SINC_TABLE[phase]
        out_flat = out.reshape(k, n_rows * width)
        for j in range(k):
            np.add.at(out_flat[j], flat, (ker * weights[j][:, None]).ravel())
        return out[:, :, pad:pad + length]
    lo = int(first.min())
    n_samp = int(first.max()) - lo + n_taps  # the arrivals' span: work is bounded by it, not by length
    span = n_samp * n_rows
    idx = np.int32 if span < 2**31 else np.int64
    # Time-major index (sample * n_rows + row), relative to the first kernel's first tap.
    start = ((first - lo) * n_rows + rows).astype(idx)
    taps = (np.arange(n_taps) * n_rows).astype(idx)
    acc = np.zeros((span, k))
    # The kernels form a sparse (span, m) matrix, one 32-tap column per arrival; its product
    # with the (m, k) weights does the scatter for all k weight sets in a single pass, with
    # no (m, 32) weighted copies (several times faster than k bincounts).
    # Chunks keep the (chunk * 32) temporaries cache-sized; each chunk also returns a zeroed
    # (span, k) product, so long spans get larger chunks. Arrivals stay vectorised.
    chunk = chunk if chunk is not None else max(4096, span // 8)
    for s in range(0, pos.size, chunk):
        sl = slice(s, s + chunk)
        m = phase[sl].size
        ker = sparse.csc_array((_SINC_TABLE[phase[sl]].ravel(), (start[sl, None] + taps).ravel(),
                                np.arange(0, n_taps * m + 1, n_taps, dtype=idx)), shape=(span, m))
        acc += ker @ np.ascontiguousarray(weights[:, sl].T)
    out[:, :, lo:lo + n_samp] = acc.reshape(n_samp, n_rows, k).transpose(2, 1, 0)
    return out[:, :, pad:pad + length]


def _fir_same(y: np.ndarray, firs: np.ndarray, which: np.ndarray, out: np.ndarray, offset: int) -> None:
    """out[r] = (row r of y convolved with the odd-length zero-phase FIR firs[which[r]])
    [offset:offset + out.shape[1]], 'same' alignment (output n centred on input n).

    Direct convolution: a 33-tap kernel costs a third of an FFT convolution on RIR lengths.
    """
    sl = slice(offset, offset + out.shape[1])
    for e in np.unique(which):
        sel = np.flatnonzero(which == e)
        if sel.size == 1 and y.shape[1] >= firs.shape[1]:
            out[sel[0]] = np.convolve(y[sel[0]], firs[e], mode="same")[sl]
        else:
            out[sel] = ndimage.convolve1d(y[sel], firs[e], axis=-1, mode="constant")[:, sl]


class HRTF:
    """Base class. Subclasses implement ``transfer``; ``hrir``/``render`` have generic versions."""

    fs: int = FS
    name: str = "hrtf"
    #: Samples of fixed delay added by ``hrir`` so that the responses are causal.
    bulk_delay: int = 48

    def transfer(self, az_deg, el_deg, n_fft: int) -> np.ndarray:
        """(n, 2, n_fft//2+1) complex128 ear transfer functions relative to the head centre."""
        raise NotImplementedError

    def hrir(self, az_deg, el_deg, n_taps: int = 256) -> np.ndarray:
        """(n, 2, n_taps) float64 impulse responses, delayed by ``bulk_delay`` samples (causal)."""
        n_taps = _check_positive_int(n_taps, "n_taps")
        n_fft = int(2 ** np.ceil(np.log2(max(4 * n_taps, 1024))))
        spec = self.transfer(az_deg, el_deg, n_fft)
        w = 2 * np.pi * np.fft.rfftfreq(n_fft)
        h = np.fft.irfft(spec * np.exp(-1j * w * self.bulk_delay), n_fft, axis=-1)
        return h[..., :n_taps]

    def render(self, az_deg, el_deg, delay_s, gain, length: int, *, interp: str = "sinc") -> np.ndarray:
        """(2, length) float64: sum_i gain_i * ear response of direction i, arriving
        delay_s_i seconds after t = 0 at the head centre. n arrivals as (n,) arrays.

        interp "sinc" (default): exact fractional delays (32-tap windowed sinc);
        "nearest": arrivals snapped to the nearest sample, for cheap statistical tails.
        """
        length = _check_positive_int(length, "length")
        if interp not in ("sinc", "nearest"):
            raise HRTFError(f"interp must be 'sinc' or 'nearest', got {interp!r}")
        az, el, d, g = _arrivals(az_deg, el_deg, delay_s, gain)
        return self.render_vectors(unit_vectors(az, el), d, g, length, interp=interp)

    def render_vectors(self, u: np.ndarray, delay_s: np.ndarray, gain: np.ndarray, length: int, *,
                       interp: str = "sinc") -> np.ndarray:
        """``render`` for directions given as (n, 3) unit vectors in the head frame (x ahead,
        y left, z up) with (n,) float64 delays and gains; no validation.

        The fast path for room rendering: image-source directions come as vectors, and
        going through azimuth/elevation would cost four trigonometric calls per arrival.
        """
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


def _check_positive_int(value, what: str) -> int:
    if int(value) != value or int(value) <= 0:
        raise HRTFError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


_EARS = np.array([0, 1])  # row index of each ear: 0 = left, 1 = right


def _arrivals(az_deg, el_deg, delay_s, gain) -> tuple[np.ndarray, ...]:
    """Validate and broadcast arrival arrays to (n,)."""
    az, el = _directions(az_deg, el_deg)
    d = np.atleast_1d(np.asarray(delay_s, dtype=np.float64))
    g = np.atleast_1d(np.asarray(gain, dtype=np.float64))
    try:
        az, el, d, g = np.broadcast_arrays(az, el, d, g)
    except ValueError:
        raise HRTFError("az, el, delay_s and gain must have the same length") from None
    if not (np.all(np.isfinite(d)) and np.all(np.isfinite(g))):
        raise HRTFError("delays and gains must be finite")
    return az, el, d, g


class SphericalHead(HRTF):
    """Brown & Duda (1998) structural rigid-sphere head model.

    Each ear = pure delay (Woodworth-type) x head-shadow filter x optional smooth spectral
    perturbation. For the angle theta between the source direction and the ear axis:

    * delay  tau(theta) = -a/c cos(theta) if theta < 90 deg (lit), else a/c (theta - pi/2)
      (the path wraps around the sphere);
    * shadow H(w, theta) = (1 + j alpha w / (2 w0)) / (1 + j w / (2 w0)), w0 = c/a,
      alpha(theta) = (1 + amin/2) + (1 - amin/2) cos(theta / theta_min * 180 deg),
      amin = 0.1, theta_min = 150 deg (bilinear transform to discrete time).

    H = LP + alpha * HP is linear in alpha, which makes ``render`` cheap: all arrivals are
    scattered as two fractional-delay impulse trains per ear (weights g and g*alpha) that are
    filtered once by the fixed LP and HP filters.

    Discrete-time details: ``hrir`` and ``render`` use a 32-tap Kaiser-windowed sinc for the
    fractional delays; ``transfer`` uses exact phase exp(-j w tau). They agree to within the
    sinc's error (small below ~7 kHz). ``hrir`` uses ``bulk_delay`` = 48 samples (3 ms).
    """

    ALPHA_MIN = 0.1
    THETA_MIN_DEG = 150.0
    _PERTURB_HALF = 16  # perturbation FIR: 33 symmetric (zero-phase) taps

    def __init__(self, radius: float = 0.0875, ear_az_deg: float = 100.0, ear_el_deg: float = 0.0,
                 perturb_db: float = 0.0, seed: int = 0, c: float = C_SOUND, fs: int = FS):
        for val, what in ((radius, "radius"), (c, "c")):
            if not np.isfinite(val) or val <= 0:
                raise HRTFError(f"{what} must be positive, got {val!r}")
        if not 0.0 < ear_az_deg < 180.0:
            raise HRTFError(f"ear_az_deg must lie in (0, 180), got {ear_az_deg!r}")
        if not -90.0 < ear_el_deg < 90.0:
            raise HRTFError(f"ear_el_deg must lie in (-90, 90), got {ear_el_deg!r}")
        if not np.isfinite(perturb_db) or perturb_db < 0:
            raise HRTFError(f"perturb_db must be >= 0, got {perturb_db!r}")
        self.radius = float(radius)
        self.ear_az_deg = float(ear_az_deg)
        self.ear_el_deg = float(ear_el_deg)
        self.perturb_db = float(perturb_db)
        self.seed = int(seed)
        self.c = float(c)
        self.fs = _check_positive_int(fs, "fs")
        self.name = (f"sphere(a={self.radius:.4f},ear={self.ear_az_deg:.1f},el={self.ear_el_deg:.1f},"
                     f"pert={self.perturb_db:g}dB,seed={self.seed})")
        self.listener_id = self.name
        # Ear axes: left ear at +ear_az, right ear at -ear_az (both at ear_el).
        self._ear_axes = unit_vectors([self.ear_az_deg, -self.ear_az_deg], [self.ear_el_deg] * 2)  # (2, 3)
        # Bilinear transform of LP(s) = b/(s+b), HP(s) = s/(s+b), b = 2 w0. LP + HP = 1 exactly.
        b, k = 2.0 * self.c / self.radius, 2.0 * self.fs
        self._den = np.array([k + b, b - k]) / (k + b)
        self._lp = np.array([b, b]) / (k + b)
        self._hp = np.array([k, -k]) / (k + b)
        self._perturb_fir = self._make_perturbation()  # (2, 33) or None
        # samples for the shadow filter's impulse response (pole p) to fall below 1e-18
        pole = abs(self._den[1])
        self._ring = int(np.ceil(np.log(1e-18) / np.log(pole))) if pole > 1e-18 else 1

    # ----------------------------------------------------------------- geometry
    def _ear_params(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-ear delay (s) and shadow alpha for (n, 3) unit direction vectors: both (n, 2)."""
        cosang = np.clip(u @ self._ear_axes.T, -1.0, 1.0)  # (n, 2)
        theta = np.arccos(cosang)
        a_c = self.radius / self.c
        tau = np.where(cosang > 0, -a_c * cosang, a_c * (theta - np.pi / 2))
        amin = self.ALPHA_MIN
        # float32 cosine: ~15x faster than float64 here (it runs per arrival of every RIR), and
        # alpha to 1e-7 is far finer than the model is accurate.
        shade = np.cos((theta * (np.pi / np.deg2rad(self.THETA_MIN_DEG))).astype(np.float32))
        alpha = (1 + amin / 2) + (1 - amin / 2) * shade.astype(np.float64)
        return tau, alpha

    def woodworth_itd(self, az_deg, el_deg=0.0) -> np.ndarray:
        """Classic Woodworth ITD (a/c)(theta + sin theta) in seconds for the lateral angle.

        theta = asin(sin(az) cos(el)); positive when the left ear leads (source on the left).
        """
        az = np.deg2rad(np.asarray(az_deg, dtype=np.float64))
        el = np.deg2rad(np.asarray(el_deg, dtype=np.float64))
        theta = np.arcsin(np.clip(np.sin(az) * np.cos(el), -1, 1))
        return self.radius / self.c * (theta + np.sin(theta))

    # ------------------------------------------------------------- perturbation
    def _make_perturbation(self) -> np.ndarray | None:
        """(2, 33) zero-phase FIRs: a few smooth random dB bumps per ear (std ~ perturb_db)."""
        if self.perturb_db == 0.0:
            return None
        rng = np.random.default_rng(self.seed)
        f = np.linspace(0.0, self.fs / 2, 257)
        band = (f >= 200) & (f <= 7500)
        firs = []
        for _ in range(2):
            n_bumps = 4
            centre = rng.uniform(300.0, 7500.0, n_bumps)
            width = rng.uniform(700.0, 1600.0, n_bumps)  # Hz; wide enough for 33 taps
            amp = rng.standard_normal(n_bumps)
            db = (amp[:, None] * np.exp(-0.5 * ((f[None, :] - centre[:, None]) / width[:, None]) ** 2)).sum(0)
            db -= db[band].mean()
            db *= self.perturb_db / max(db[band].std(), 1e-9)
            firs.append(signal.firwin2(2 * self._PERTURB_HALF + 1, f, 10 ** (db / 20), fs=self.fs))
        return np.array(firs)

    def _perturb_response(self, n_fft: int) -> np.ndarray:
        """(2, n_fft//2+1) real zero-phase response of the perturbation FIRs (ones if none)."""
        nf = n_fft // 2 + 1
        if self._perturb_fir is None:
            return np.ones((2, nf))
        w = 2 * np.pi * np.fft.rfftfreq(n_fft)
        k = np.arange(-self._PERTURB_HALF, self._PERTURB_HALF + 1)
        return self._perturb_fir @ np.cos(np.outer(k, w))  # symmetric taps: exp terms are real

    # ------------------------------------------------------------------ API
    def transfer(self, az_deg, el_deg, n_fft: int) -> np.ndarray:
        n_fft = _check_positive_int(n_fft, "n_fft")
        az, el = _directions(az_deg, el_deg)
        tau, alpha = self._ear_params(unit_vectors(az, el))
        z1 = np.exp(-1j * 2 * np.pi * np.fft.rfftfreq(n_fft))  # z^-1 on the unit circle
        den = self._den[0] + self._den[1] * z1
        lp = (self._lp[0] + self._lp[1] * z1) / den
        hp = (self._hp[0] + self._hp[1] * z1) / den
        w = 2 * np.pi * np.fft.rfftfreq(n_fft, d=1.0 / self.fs)
        shadow = lp[None, None, :] + alpha[..., None] * hp[None, None, :]
        return shadow * np.exp(-1j * w * tau[..., None]) * self._perturb_response(n_fft)[None]

    def _synth(self, rows: np.ndarray, pos: np.ndarray, weight: np.ndarray, alpha: np.ndarray,
               ears: np.ndarray, n_rows: int, length: int, interp: str = "sinc") -> np.ndarray:
        """Scatter arrivals (row, position in samples, weight, alpha), filter, perturb.

        ears (n_rows,) says which ear's perturbation each row gets. Returns (n_rows, length).
        A pre-roll buffer keeps the non-causal part of the sinc / zero-phase kernels exact.
        """
        pre = post = _SINC_HALF + self._PERTURB_HALF + 4
        out = np.zeros((n_rows, length))
        if pos.size == 0:
            return out
        # Only the stretch holding arrivals is filtered (early reflections span a fraction of
        # a RIR): beyond it the output is the shadow filter's free decay, which has fallen
        # below 1e-18 of the last arrival after ``_ring`` samples (far under float64 rounding).
        end = min(pre + length + post, int(np.ceil(pos.max())) + pre + _SINC_HALF + self._ring
                  + self._PERTURB_HALF + 2)
        if end <= 0:
            return out
        # LP + alpha HP = 1 + (alpha - 1) HP exactly (bilinear LP + HP = 1): one IIR pass
        trains = _scatter(rows, pos + pre, np.stack([weight, weight * (alpha - 1.0)]), n_rows, end, interp)
        y = signal.lfilter(self._hp, self._den, trains[1], axis=-1)
        y += trains[0]  # in place: RIR-length temporaries cost page faults
        n = min(length, end - pre)
        if n <= 0:
            return out
        if self._perturb_fir is None:
            out[:, :n] = y[:, pre:pre + n]
        else:
            _fir_same(y, self._perturb_fir, ears, out[:, :n], pre)
        return out

    def hrir(self, az_deg, el_deg, n_taps: int = 256) -> np.ndarray:
        """(n, 2, n_taps) float64 HRIRs; head-centre arrival at ``bulk_delay`` = 48 samples."""
        n_taps = _check_positive_int(n_taps, "n_taps")
        az, el = _directions(az_deg, el_deg)
        tau, alpha = self._ear_params(unit_vectors(az, el))
        n = az.size
        rows = np.arange(2 * n)
        pos = self.bulk_delay + tau.ravel() * self.fs
        ears = np.tile([0, 1], n)
        out = self._synth(rows, pos, np.ones(2 * n), alpha.ravel(), ears, 2 * n, n_taps)
        return out.reshape(n, 2, n_taps)

    def render_vectors(self, u, delay_s, gain, length: int, *, interp: str = "sinc") -> np.ndarray:
        """(2, length) float64 sum of n arrivals; vectorised over arrivals (see ``HRTF``)."""
        tau, alpha = self._ear_params(u)  # (n, 2)
        pos = (delay_s[:, None] + tau) * self.fs
        rows = np.broadcast_to(_EARS, pos.shape).ravel()
        return self._synth(rows, pos.ravel(), np.repeat(gain, 2), alpha.ravel(), _EARS, 2, length, interp)


def sample_listener(rng: np.random.Generator) -> SphericalHead:
    """A random plausible listener: radius U(0.075, 0.100) m, ear azimuth U(95, 105) deg,
    ear elevation U(-5, 5) deg, 1.5 dB spectral perturbation. Deterministic given rng state."""
    radius = rng.uniform(0.075, 0.100)
    ear_az = rng.uniform(95.0, 105.0)
    ear_el = rng.uniform(-5.0, 5.0)
    seed = int(rng.integers(0, 2**31 - 1))
    return SphericalHead(radius=radius, ear_az_deg=ear_az, ear_el_deg=ear_el, perturb_db=1.5, seed=seed)


# ===================================================================== diffuse field
def fibonacci_directions(n: int, rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(az_deg, el_deg) of n near-uniform directions on the sphere (Fibonacci lattice),
    randomly rotated when ``rng`` is given."""
    i = np.arange(n) + 0.5
    z = 1.0 - 2.0 * i / n
    r = np.sqrt(1.0 - z * z)
    phi = np.pi * (3.0 - np.sqrt(5.0)) * i
    v = np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)
    if rng is not None:
        q, rr = np.linalg.qr(rng.standard_normal((3, 3)))
        q *= np.sign(np.diag(rr))  # Haar-uniform rotation (may be a reflection: fine for a point set)
        v = v @ q.T
    az = np.degrees(np.arctan2(v[:, 1], v[:, 0]))
    el = np.degrees(np.arcsin(np.clip(v[:, 2], -1.0, 1.0)))
    return az, el


_DIFFUSE_SPECTRA: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def diffuse_spectra(hrtf: HRTF, n_dirs: int = 256, n_fft_model: int = 1024) -> tuple[np.ndarray, ...]:
    """Diffuse-field auto and cross spectra (c11, c22, c21), each (n_fft_model // 2 + 1,): the
    mean of H_d H_d^H over ``n_dirs`` Fibonacci-lattice directions (left = 1, right = 2).

    A function of the listener alone, so it is computed once per HRTF object and kept while
    the object lives (a weak-key cache: a listener used for many clips pays once).
    """
    per_hrtf = _DIFFUSE_SPECTRA.setdefault(hrtf, {})
    key = (int(n_dirs), int(n_fft_model))
    if key not in per_hrtf:
        # one fixed rotation, so the result depends on the listener only
        az, el = fibonacci_directions(key[0], np.random.default_rng(key[0]))
        h = np.asarray(hrtf.hrir(az, el), dtype=np.float64)                 # (D, 2, taps)
        H = np.fft.rfft(h, n=max(key[1], 2 * h.shape[-1]), axis=-1)        # (D, 2, F0)
        per_hrtf[key] = (np.mean(np.abs(H[:, 0]) ** 2, axis=0), np.mean(np.abs(H[:, 1]) ** 2, axis=0),
                         np.mean(H[:, 1] * np.conj(H[:, 0]), axis=0))
    return per_hrtf[key]


def diffuse_cholesky(hrtf: HRTF, n_bins: int, n_dirs: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Factors (l11, l21, l22), each (n_bins,), of the lower-triangular L(f) = [[l11, 0], [l21, l22]]
    with L L^H = mean_d H_d(f) H_d(f)^H, on the rfft grid of a signal with n_bins bins:
    independent white noises z1, z2 -> (l11 z1, l21 z1 + l22 z2) is noise with the two-ear
    cross-spectrum of a diffuse field around this listener (see ``diffuse_field_noise``).

    The 2x2 cross-spectral matrix of many independent sources removes each HRIR's bulk delay,
    so it is smooth in frequency: it comes on a 1024-point grid and is interpolated.
    """
    c11, c22, c21 = diffuse_spectra(hrtf, n_dirs)
    f0 = np.linspace(0.0, 1.0, c11.size)
    f = np.linspace(0.0, 1.0, int(n_bins))
    c11, c22 = np.interp(f, f0, c11), np.interp(f, f0, c22)
    c21 = np.interp(f, f0, c21.real) + 1j * np.interp(f, f0, c21.imag)
    l11 = np.sqrt(np.maximum(c11, 1e-20))
    l21 = c21 / l11
    l22 = np.sqrt(np.maximum(c22 - np.abs(l21) ** 2, 0.0))
    return l11, l21, l22


def diffuse_field_noise(hrtf: HRTF, n: int, rng: np.random.Generator, weights: np.ndarray | None = None,
                        n_dirs: int = 256) -> np.ndarray:
    """(2, n) Gaussian noise with the two-ear cross-spectrum of a diffuse field around ``hrtf``:
    unit-variance white noise as heard through the field (per-sample variance = the
    diffuse-field mean of |H|^2), optionally coloured by real per-bin amplitude ``weights``
    (n // 2 + 1,). One FFT instead of many directions' convolutions.
    """
    n_bins = n // 2 + 1
    l11, l21, l22 = diffuse_cholesky(hrtf, n_bins, n_dirs)
    z = rng.standard_normal((2, 2, n_bins))
    z = (z[0] + 1j * z[1]) * np.sqrt(n / 2.0)  # E|z|^2 = n, as the rfft of unit white noise
    if weights is not None:
        z *= weights
    return np.fft.irfft(np.stack([l11 * z[0], l21 * z[0] + l22 * z[1]]), n=n, axis=-1)


# ===================================================================== SOFA
def _import_h5py():
    try:
        import h5py
    except ImportError:  # pragma: no cover - depends on environment
        raise HRTFError("h5py is needed for SOFA files: pip install 'binlearn[sofa]'") from None
    return h5py


def _peak_times(ir: np.ndarray) -> np.ndarray:
    """Sub-sample position of the largest |ir| sample (parabolic fit), for (..., N) responses."""
    mag = np.abs(ir)
    i = np.clip(np.argmax(mag, axis=-1), 1, ir.shape[-1] - 2)
    y0, y1, y2 = (np.take_along_axis(mag, (i + k)[..., None], -1)[..., 0] for k in (-1, 0, 1))
    den = y0 - 2 * y1 + y2
    frac = np.where(den < 0, 0.5 * (y0 - y2) / np.where(den < 0, den, -1.0), 0.0)
    return i + np.clip(frac, -0.5, 0.5)


class SofaHRTF(HRTF):
    """Measured HRTF set from an AES69 SOFA file (SimpleFreeFieldHRIR), resampled to 16 kHz.

    Lookup is nearest measured direction (great-circle). Head-centre reference: a SOFA file
    does not say when the sound passed the head centre, so we estimate it as the earliest
    main-peak time in the set (1st percentile over all IRs and ears, robust to a stray
    measurement: the near ear of a lateral source) plus a/c for a = 0.0875 m (how much a
    lateral near ear leads the head centre).
    That reference (in samples, ``ref_delay``) is removed in ``transfer``/``render``; ``hrir``
    shifts it to ``bulk_delay``. It is common to all directions, so ITDs are untouched.
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        fname = os.path.basename(self.path)
        self.name = f"sofa:{fname}"
        if not os.path.isfile(self.path):
            raise HRTFError(f"SOFA file {self.path!r}: no such file")
        h5py = _import_h5py()
        try:
            with h5py.File(self.path, "r") as f:
                conv = _attr_str(f.attrs.get("SOFAConventions", b""))
                if _attr_str(f.attrs.get("Conventions", b"")) != "SOFA":
                    raise HRTFError(f"SOFA file {fname!r}: not a SOFA file (Conventions attribute missing)")
                if conv != "SimpleFreeFieldHRIR":
                    raise HRTFError(f"SOFA file {fname!r}: convention {conv!r} unsupported, need SimpleFreeFieldHRIR")
                ir = np.asarray(f["Data.IR"][()], dtype=np.float64)
                sr = float(np.ravel(f["Data.SamplingRate"][()])[0])
                pos_ds = f["SourcePosition"]
                pos = np.asarray(pos_ds[()], dtype=np.float64)
                ptype = _attr_str(pos_ds.attrs.get("Type", b"spherical")).lower()
                units = _attr_str(pos_ds.attrs.get("Units", b"degree, degree, metre")).lower()
                delay = np.asarray(f["Data.Delay"][()], dtype=np.float64) if "Data.Delay" in f else None
        except HRTFError:
            raise
        except KeyError as e:
            raise HRTFError(f"SOFA file {fname!r}: missing variable {e.args[0] if e.args else ''}".strip()) from None
        except Exception as e:  # h5py raises OSError and friends for garbage files
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise HRTFError(f"SOFA file {fname!r}: unreadable ({msg})") from None
        if ir.ndim != 3 or ir.shape[1] != 2 or ir.shape[0] < 1 or ir.shape[2] < 2:
            raise HRTFError(f"SOFA file {fname!r}: Data.IR must have shape (M, 2, N), got {ir.shape}")
        if pos.ndim == 1:
            pos = pos[None, :]
        if pos.shape[1] != 3 or pos.shape[0] not in (1, ir.shape[0]):
            raise HRTFError(f"SOFA file {fname!r}: SourcePosition shape {pos.shape} does not match Data.IR {ir.shape}")
        pos = np.broadcast_to(pos, (ir.shape[0], 3))
        if not (np.isfinite(sr) and sr > 0 and np.all(np.isfinite(ir)) and np.all(np.isfinite(pos))):
            raise HRTFError(f"SOFA file {fname!r}: non-finite or invalid data")
        # Integer per-receiver delays (Data.Delay, samples) are prepended to the IRs.
        if delay is not None and np.any(delay != 0):
            d = np.broadcast_to(np.rint(delay).astype(int).reshape(-1, 2) if delay.size > 1 else
                                np.rint(delay).astype(int).reshape(1, 1), (ir.shape[0], 2))
            padded = np.zeros(ir.shape[:2] + (ir.shape[2] + int(d.max()),))
            for m_r in np.ndindex(*ir.shape[:2]):  # once at load time; not a hot path
                padded[m_r][d[m_r]:d[m_r] + ir.shape[2]] = ir[m_r]
            ir = padded
        if "cartesian" in ptype:
            x, y, z = pos.T
            r = np.sqrt(x**2 + y**2 + z**2)
            if np.any(r == 0):
                raise HRTFError(f"SOFA file {fname!r}: source position at the head centre")
            self.az = np.rad2deg(np.arctan2(y, x))
            self.el = np.rad2deg(np.arcsin(np.clip(z / r, -1, 1)))
        else:
            az, el = pos[:, 0], pos[:, 1]
            if "rad" in units.split(",")[0]:
                az, el = np.rad2deg(az), np.rad2deg(el)
            self.az = (az + 180.0) % 360.0 - 180.0
            self.el = el.astype(np.float64)
        if sr != FS:
            frac = Fraction(FS) / Fraction(sr).limit_denominator(1000)
            ir = signal.resample_poly(ir, frac.numerator, frac.denominator, axis=-1)
        self.ir = np.ascontiguousarray(ir)  # (M, 2, N) at 16 kHz
        self.ref_delay = float(np.percentile(_peak_times(self.ir), 1)) + 0.0875 / C_SOUND * FS
        self._units = unit_vectors(self.az, self.el)
        from scipy.spatial import cKDTree
        self._tree = cKDTree(self._units)

    def nearest(self, az_deg, el_deg) -> np.ndarray:
        """(n,) indices of the nearest measured directions (great-circle distance)."""
        az, el = _directions(az_deg, el_deg)
        return self._nearest_vectors(unit_vectors(az, el))

    def _nearest_vectors(self, u: np.ndarray) -> np.ndarray:
        # nearest chord = nearest great-circle distance (for unit vectors)
        return self._tree.query(u)[1]

    def transfer(self, az_deg, el_deg, n_fft: int) -> np.ndarray:
        n_fft = _check_positive_int(n_fft, "n_fft")
        idx = self.nearest(az_deg, el_deg)
        n_ir = self.ir.shape[-1]
        size = max(n_fft, n_ir)
        spec = np.fft.rfft(self.ir[idx], size, axis=-1)
        w = 2 * np.pi * np.fft.rfftfreq(size)
        spec = spec * np.exp(1j * w * self.ref_delay)
        if size != n_fft:  # IR longer than n_fft: sample the long spectrum's frequency grid
            f_target = np.fft.rfftfreq(n_fft)
            sel = np.rint(f_target * size).astype(int)
            spec = spec[..., sel]
        return spec

    def hrir(self, az_deg, el_deg, n_taps: int = 256) -> np.ndarray:
        """(n, 2, n_taps) nearest measured IRs, shifted so the head centre sits at ``bulk_delay``."""
        n_taps = _check_positive_int(n_taps, "n_taps")
        idx = self.nearest(az_deg, el_deg)
        size = int(2 ** np.ceil(np.log2(self.ir.shape[-1] + n_taps + 4 * self.bulk_delay)))
        w = 2 * np.pi * np.fft.rfftfreq(size)
        spec = np.fft.rfft(self.ir[idx], size, axis=-1) * np.exp(1j * w * (self.ref_delay - self.bulk_delay))
        return np.fft.irfft(spec, size, axis=-1)[..., :n_taps]

    def render_vectors(self, u, delay_s, gain, length: int, *, interp: str = "sinc",
                       block: int = 32) -> np.ndarray:
        """(2, length): arrivals grouped by nearest direction; one FFT per used direction."""
        d, g = delay_s, gain
        if d.size == 0:
            return np.zeros((2, length))
        used, group = np.unique(self._nearest_vectors(u), return_inverse=True)
        n_ir = self.ir.shape[-1]
        pre = _SINC_HALF + 1
        # IR sample k plays (k - ref_delay) samples after the head-centre arrival.
        pos = d * FS - self.ref_delay + pre
        n_train = length + pre
        size = int(2 ** np.ceil(np.log2(n_train + n_ir)))
        acc = np.zeros((2, size // 2 + 1), dtype=np.complex128)
        for s in range(0, used.size, block):  # blocks bound memory; arrivals stay vectorised
            sel = (group >= s) & (group < s + block)
            nb = min(block, used.size - s)
            trains = _scatter(group[sel] - s, pos[sel], g[sel][None], nb, n_train, interp)[0]
            tr_spec = np.fft.rfft(trains, size, axis=-1)  # (nb, F)
            ir_spec = np.fft.rfft(self.ir[used[s:s + nb]], size, axis=-1)  # (nb, 2, F)
            acc += np.einsum("bf,bef->ef", tr_spec, ir_spec)
        return np.fft.irfft(acc, size, axis=-1)[:, pre:pre + length]


def _attr_str(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        return _attr_str(value.ravel()[0]) if value.size else ""
    return str(value)


def load_hrtf(spec: str | None) -> HRTF:
    """None or "sphere" -> SphericalHead(); a path ending in .sofa -> SofaHRTF(path)."""
    if spec is None or spec == "sphere":
        return SphericalHead()
    if isinstance(spec, (str, os.PathLike)) and os.fspath(spec).lower().endswith(".sofa"):
        return SofaHRTF(spec)
    raise HRTFError(f"unknown HRTF spec {spec!r}: use 'sphere' or a path to a .sofa file")


def write_sofa(path, hrtf: HRTF, az_deg, el_deg, n_taps: int = 256, fs: int = FS) -> None:
    """Write a minimal valid AES69 SimpleFreeFieldHRIR file of ``hrtf.hrir`` on the given grid.

    IRs are written at ``fs`` (resampled from 16 kHz if different); source distance 1.2 m.
    """
    h5py = _import_h5py()
    az, el = _directions(az_deg, el_deg)
    ir = hrtf.hrir(az, el, n_taps)  # (M, 2, N) at 16 kHz
    fs = _check_positive_int(fs, "fs")
    if fs != FS:
        frac = Fraction(fs, FS)
        ir = signal.resample_poly(ir, frac.numerator, frac.denominator, axis=-1)
    m, r, n = ir.shape
    with h5py.File(os.fspath(path), "w") as f:
        attrs = {
            "Conventions": "SOFA", "Version": "2.1", "SOFAConventions": "SimpleFreeFieldHRIR",
            "SOFAConventionsVersion": "1.0", "APIName": "binlearn", "APIVersion": "0.1",
            "DataType": "FIR", "RoomType": "free field", "Title": hrtf.name,
            "DateCreated": "2024-01-01 00:00:00", "DateModified": "2024-01-01 00:00:00",
            "AuthorContact": "", "Organization": "", "License": "No license provided",
            "ListenerShortName": hrtf.name, "Comment": "written by binlearn.hrtf.write_sofa",
            "DatabaseName": "binlearn",
        }
        for k, v in attrs.items():
            f.attrs[k] = np.bytes_(v)
        # netCDF-style dimension scales
        for dim, size in (("M", m), ("R", r), ("N", n), ("E", 1), ("C", 3), ("I", 1)):
            ds = f.create_dataset(dim, data=np.zeros(size))
            ds.attrs["NAME"] = np.bytes_(f"This is a netCDF dimension but not a netCDF variable.{size:10d}")

        def var(name, data, dims, **extra):
            ds = f.create_dataset(name, data=np.asarray(data, dtype=np.float64))
            ds.attrs["DIMENSION_LIST_NAMES"] = np.bytes_(dims)  # informational
            for k, v in extra.items():
                ds.attrs[k] = np.bytes_(v)
            return ds

        var("ListenerPosition", np.zeros((1, 3)), "I,C", Type="cartesian", Units="metre")
        var("ListenerUp", [[0.0, 0.0, 1.0]], "I,C")
        var("ListenerView", [[1.0, 0.0, 0.0]], "I,C", Type="cartesian", Units="metre")
        a = getattr(hrtf, "radius", 0.0875)
        var("ReceiverPosition", [[[0.0], [a], [0.0]], [[0.0], [-a], [0.0]]], "R,C,I", Type="cartesian", Units="metre")
        var("EmitterPosition", np.zeros((1, 3, 1)), "E,C,I", Type="cartesian", Units="metre")
        var("SourcePosition", np.stack([az, el, np.full(m, 1.2)], axis=1), "M,C",
            Type="spherical", Units="degree, degree, metre")
        var("Data.IR", ir, "M,R,N")
        var("Data.SamplingRate", [float(fs)], "I", Units="hertz")
        var("Data.Delay", np.zeros((1, r)), "I,R")
