"""Classic signal-processing binaural localisers (numpy/scipy only).

Three baselines estimate the azimuth of a single talker from a two-ear
recording ``x`` of shape ``(2, time)`` (channel 0 = left ear, 1 = right ear):

``gcc-phat``
    Generalised cross-correlation with phase transform.  The interaural delay
    is found on a fine lag grid and mapped to an azimuth through a
    delay-vs-azimuth table (``itd_table``, e.g. :func:`gcc_itd_table` or
    :func:`woodworth_itd`).
``srp-phat``
    Steered response power with phase transform, steered with the
    interaural transfer function of an HRTF (``steering``).
``music``
    Narrowband MUSIC per frequency bin on the 2x2 spatial covariance, with
    the HRTF ear transfer functions as array manifold; pseudo-spectra are
    combined over bins.

Conventions
-----------
* ``fs = 16000`` Hz by default; azimuth in degrees, 0 = ahead, positive = the
  listener's LEFT; delays ``tau > 0`` when the LEFT ear leads.
* STFT: 512-point FFT, hop 160, periodic Hann window, *centred* frames
  (the signal is zero-padded by 256 samples on both sides, like
  ``torch.stft(center=True)``), so a signal of ``T`` samples has
  ``n_frames(T) = 1 + T // 160`` frames; frame ``i`` is centred on sample
  ``160 * i``.  Only bins inside ``band`` (default 200 Hz - 7 kHz) are used.
* ``steering``: complex ``(K, 2, 257)`` ear transfer functions for the ``K``
  grid azimuths at the rfft bins of a 512-point FFT.
* ``itd_table``: ``(K,)`` interaural delay in seconds per grid azimuth.

Every localiser returns a dict with

``"azimuth"``   float, utterance-level estimate (deg),
``"frames"``    ``(n_frames,)`` per-frame estimates (MUSIC: per block of
                ``n_frames_cov`` frames); NaN for frames excluded by ``mask``,
``"spectrum"``  ``(K,)`` utterance-level score over ``az_grid`` (higher =
                more likely),
``"frames_per_estimate"``  1 for GCC/SRP, the block length for MUSIC.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import get_window

__all__ = [
    "METHODS",
    "N_FFT",
    "HOP",
    "DEFAULT_BAND",
    "n_frames",
    "stft",
    "itd_from_steering",
    "gcc_itd_table",
    "woodworth_itd",
    "gcc_phat_doa",
    "srp_phat_doa",
    "music_doa",
    "localise",
]

METHODS = ("gcc-phat", "srp-phat", "music")
N_FFT = 512
HOP = 160
N_BINS = N_FFT // 2 + 1
DEFAULT_BAND = (200.0, 7000.0)
_EPS = 1e-12
_WINDOW = get_window("hann", N_FFT)  # periodic Hann


# --------------------------------------------------------------------------- STFT
def n_frames(n_samples: int) -> int:
    """Number of STFT frames produced by :func:`stft` for ``n_samples`` samples."""
    return 1 + int(n_samples) // HOP


def stft(x: np.ndarray) -> np.ndarray:
    """Centred STFT of a ``(C, T)`` signal -> complex ``(C, n_frames, 257)``."""
    x = np.asarray(x, dtype=np.float64)
    pad = N_FFT // 2
    xp = np.pad(x, ((0, 0), (pad, pad)))
    nf = n_frames(x.shape[-1])
    frames = np.lib.stride_tricks.sliding_window_view(xp, N_FFT, axis=-1)[:, : nf * HOP : HOP]
    return np.fft.rfft(frames * _WINDOW, axis=-1)


def _freqs(fs: float) -> np.ndarray:
    return np.arange(N_BINS) * fs / N_FFT


def _band_bins(fs: float, band) -> np.ndarray:
    f = _freqs(fs)
    lo, hi = float(band[0]), float(band[1])
    idx = np.flatnonzero((f >= lo) & (f <= hi) & (f > 0))
    if idx.size < 2:
        raise ValueError(f"band {band} Hz selects fewer than 2 FFT bins at fs={fs}")
    return idx


def _check_x(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != 2:
        raise ValueError(f"x must have shape (2, time) (left, right), got {x.shape}")
    return x


def _check_grid(az_grid, K: int | None = None) -> np.ndarray:
    az = np.asarray(az_grid, dtype=np.float64).reshape(-1)
    if K is not None and az.size != K:
        raise ValueError(f"az_grid has {az.size} points but the table/steering has {K}")
    if az.size < 2:
        raise ValueError("az_grid needs at least 2 points")
    return az


def _check_steering(steering, K: int | None = None) -> np.ndarray:
    H = np.asarray(steering)
    if H.ndim != 3 or H.shape[1] != 2 or H.shape[2] != N_BINS:
        raise ValueError(f"steering must have shape (K, 2, {N_BINS}), got {H.shape}")
    if K is not None and H.shape[0] != K:
        raise ValueError(f"steering has {H.shape[0]} directions but az_grid has {K}")
    return H.astype(np.complex128, copy=False)


def _check_mask(mask, nf: int) -> np.ndarray:
    if mask is None:
        return np.ones(nf, dtype=bool)
    m = np.asarray(mask, dtype=bool).reshape(-1)
    if m.size != nf:
        raise ValueError(
            f"mask has {m.size} entries but the signal has {nf} STFT frames "
            f"(n_frames = 1 + n_samples // {HOP})"
        )
    if not m.any():
        raise ValueError("mask selects no frames")
    return m


def _active(X: np.ndarray, mask: np.ndarray, floor_db: float | None) -> np.ndarray:
    """Frames used for utterance-level aggregation: ``mask`` and above an energy floor."""
    if floor_db is None:
        return mask
    e = np.sum(np.abs(X) ** 2, axis=(0, 2))
    ref = e[mask].max()
    if ref <= 0:
        return mask
    act = mask & (e > ref * 10.0 ** (floor_db / 10.0))
    return act if act.any() else mask


# --------------------------------------------------------------------------- grid helpers
def _wrap180(a):
    return (np.asarray(a, dtype=np.float64) + 180.0) % 360.0 - 180.0


def _grid_topology(az: np.ndarray):
    """Sorted order of the grid and whether it closes around the full circle."""
    order = np.argsort(az, kind="stable")
    s = az[order]
    d = np.diff(s)
    gap = s[0] + 360.0 - s[-1]
    circular = bool(d.size and 0 < gap <= 1.5 * d.max() + 1e-9)
    return order, circular


def _parabolic_peak(P: np.ndarray, az: np.ndarray) -> np.ndarray:
    """Sub-grid peak azimuth of rows of ``P`` (B, K) on a (possibly non-uniform) grid.

    A parabola through the maximum and its two neighbours (in sorted azimuth
    order; wrapping round for full-circle grids) gives the vertex; no
    refinement at the ends of an open grid.  Rows that are all-NaN give NaN.
    """
    P = np.atleast_2d(P)
    order, circular = _grid_topology(az)
    s = az[order]
    Ps = P[:, order]
    K = s.size
    bad = ~np.isfinite(Ps).any(axis=1)
    Ps = np.where(np.isfinite(Ps), Ps, -np.inf)
    i = np.argmax(Ps, axis=1)
    if circular:
        im, ip = (i - 1) % K, (i + 1) % K
        xm = _wrap180(s[im] - s[i])
        xp = _wrap180(s[ip] - s[i])
        edge = np.zeros_like(i, dtype=bool)
    else:
        im, ip = np.clip(i - 1, 0, K - 1), np.clip(i + 1, 0, K - 1)
        xm, xp = s[im] - s[i], s[ip] - s[i]
        edge = (i == 0) | (i == K - 1)
    rows = np.arange(P.shape[0])
    y0, ym, yp = Ps[rows, i], Ps[rows, im], Ps[rows, ip]
    with np.errstate(all="ignore"):
        dm, dp = ym - y0, yp - y0
        det = xm * xp * (xp - xm)
        beta = (dm * xp**2 - dp * xm**2) / det
        gamma = (xm * dp - xp * dm) / det
        delta = np.where((gamma < 0) & ~edge & np.isfinite(beta), -beta / (2 * gamma), 0.0)
    delta = np.clip(np.nan_to_num(delta), np.minimum(xm, 0), np.maximum(xp, 0))
    out = s[i] + delta
    if circular:
        out = _wrap180(out)
    out[bad] = np.nan
    return out


def _parabolic_uniform(G: np.ndarray) -> np.ndarray:
    """Fractional index of the row maxima of ``G`` (B, L) on a uniform grid."""
    L = G.shape[1]
    i = np.argmax(G, axis=1)
    rows = np.arange(G.shape[0])
    ym = G[rows, np.clip(i - 1, 0, L - 1)]
    y0 = G[rows, i]
    yp = G[rows, np.clip(i + 1, 0, L - 1)]
    den = ym - 2 * y0 + yp
    with np.errstate(all="ignore"):
        d = np.where((den < 0) & (i > 0) & (i < L - 1), 0.5 * (ym - yp) / den, 0.0)
    return i + np.clip(np.nan_to_num(d), -0.5, 0.5)


# --------------------------------------------------------------------------- ITD tables
def woodworth_itd(az_deg, radius: float = 0.0875, c: float = 343.0):
    """Woodworth ITD ``(a/c)(theta + sin theta)`` in seconds.

    ``theta`` is the lateral angle ``asin(sin az)`` so the model is front-back
    symmetric; positive (left ear leads) for ``0 < az < 180``.
    """
    th = np.arcsin(np.clip(np.sin(np.deg2rad(np.asarray(az_deg, dtype=np.float64))), -1, 1))
    return (radius / c) * (th + np.sin(th))


def itd_from_steering(steering, fs: float = 16000, band=(200.0, 1500.0)) -> np.ndarray:
    """Interaural delay per direction from HRTF steering vectors.

    The phase of the interaural cross spectrum ``H_L(f) conj(H_R(f))`` is
    unwrapped along frequency starting from the first non-DC bin (so the
    2*pi ambiguity is resolved at ~31 Hz), and a weighted least-squares line
    *through the origin* ``phi(w) = w * tau`` is fitted over the bins in
    ``band`` with weights ``|H_L| |H_R|``.  The slope is the (low-frequency
    phase) delay; ``tau > 0`` when the LEFT ear leads.  This is the
    delay-vs-azimuth table used by :func:`gcc_phat_doa`.

    Returns ``(K,)`` seconds.
    """
    H = _check_steering(steering)
    bins = _band_bins(fs, band)
    top = bins.max()
    cross = H[:, 0, 1 : top + 1] * np.conj(H[:, 1, 1 : top + 1])  # (K, top)
    phi = np.unwrap(np.angle(cross), axis=-1)
    # the first bin's phase is taken as principal value; unwrap keeps continuity above
    sel = bins - 1
    w = np.abs(cross[:, sel])
    om = 2 * np.pi * _freqs(fs)[bins]
    num = np.sum(w * om * phi[:, sel], axis=-1)
    den = np.sum(w * om**2, axis=-1) + _EPS
    return num / den


def gcc_itd_table(steering, fs: float = 16000, band=DEFAULT_BAND, upsample: int = 8,
                  max_lag_s: float = 1.5e-3) -> np.ndarray:
    """Delay-vs-azimuth table matched to :func:`gcc_phat_doa`: the GCC-PHAT peak lag of each direction's own
    interaural transfer ``H_L conj(H_R)`` over the same band.

    A sphere's interaural delay depends on frequency (about 1.5x the Woodworth value at low frequencies), so a
    table from a low-band phase slope (:func:`itd_from_steering`) biases GCC-PHAT, whose broadband peak weights
    all bins of ``band`` equally. Returns ``(K,)`` seconds, ``tau > 0`` when the left ear leads.
    """
    H = _check_steering(steering)
    bins = _band_bins(fs, band)
    om = 2 * np.pi * _freqs(fs)[bins]
    C = H[:, 0, bins] * np.conj(H[:, 1, bins])
    C = C / (np.abs(C) + _EPS)
    step = 1.0 / (fs * int(upsample))
    n_lag = int(np.ceil(max_lag_s / step))
    lags = np.arange(-n_lag, n_lag + 1) * step
    ph = np.outer(om, lags)
    G = C.real @ np.cos(ph) + C.imag @ np.sin(ph)  # (K, L)
    return lags[0] + _parabolic_uniform(G) * step


def _itd_to_az(tau, itd_table: np.ndarray, az: np.ndarray) -> np.ndarray:
    """Invert a monotone delay table on the frontal part of the grid."""
    a = _wrap180(az)
    front = np.abs(a) <= 90.0 + 1e-9
    if front.sum() < 2:
        raise ValueError("itd_table inversion needs at least 2 frontal grid azimuths (|az| <= 90)")
    af, tf = a[front], np.asarray(itd_table, dtype=np.float64)[front]
    o = np.argsort(af)
    af, tf = af[o], tf[o]
    if tf[-1] <= tf[0]:
        raise ValueError(
            "itd_table must increase with azimuth over the frontal grid "
            "(tau > 0 when the left ear leads, az > 0 = left)"
        )
    # force strictly increasing (tables can saturate / wiggle near +-90 deg)
    tf = np.maximum.accumulate(tf) + np.arange(tf.size) * 1e-13
    return np.interp(tau, tf, af)


def _steered_inputs(x, az_grid, steering, mask, fs, band):
    """Validated inputs shared by the steered methods: (grid, steering (K,2,F), STFT, frame mask, band bins)."""
    x = _check_x(x)
    az = _check_grid(az_grid)
    H = _check_steering(steering, az.size)
    X = stft(x)
    return az, H, X, _check_mask(mask, X.shape[1]), _band_bins(fs, band)


# --------------------------------------------------------------------------- GCC-PHAT
def _phat_cross(X: np.ndarray, bins: np.ndarray) -> np.ndarray:
    C = X[0][:, bins] * np.conj(X[1][:, bins])  # (n_frames, Fb)
    return C / (np.abs(C) + _EPS)


def gcc_phat_doa(
    x,
    itd_table,
    az_grid,
    fs: float = 16000,
    band=DEFAULT_BAND,
    max_lag_s: float = 1e-3,
    upsample: int = 8,
    mask=None,
    floor_db: float | None = -50.0,
) -> dict:
    """GCC-PHAT azimuth estimate.

    The PHAT-weighted cross spectrum ``X_L conj(X_R) / |.|`` of every frame is
    evaluated on a lag grid ``|lag| <= max(max_lag_s, 1.05 max|itd_table|)`` with step
    ``1 / (fs * upsample)`` by frequency-domain steering (band-limited to
    ``band``).  Utterance level: GCCs summed uniformly over the active frames
    (``mask`` and frame energy above ``floor_db`` relative to the loudest
    frame), peak lag with parabolic refinement, then azimuth by inverting the
    monotone ``itd_table`` over the frontal part of ``az_grid`` (|az| <= 90;
    on a full-circle grid the answer is therefore always frontal: front-back
    ambiguity is not resolved).  Frame level: same per frame (NaN outside
    ``mask``).  ``spectrum`` is the summed GCC read at each grid azimuth's
    table delay.  Extra key ``"itd"``: the utterance-level delay (s).
    """
    x = _check_x(x)
    az = _check_grid(az_grid)
    itd_table = np.asarray(itd_table, dtype=np.float64).reshape(-1)
    if itd_table.size != az.size:
        raise ValueError(f"itd_table has {itd_table.size} entries but az_grid has {az.size}")
    X = stft(x)
    nf = X.shape[1]
    m = _check_mask(mask, nf)
    act = _active(X, m, floor_db)
    bins = _band_bins(fs, band)
    om = 2 * np.pi * _freqs(fs)[bins]
    C = _phat_cross(X, bins)  # (nf, Fb)

    step = 1.0 / (fs * int(upsample))
    # never search a narrower range than the table spans
    max_lag = max(float(max_lag_s), 1.05 * float(np.max(np.abs(itd_table))))
    n_lag = int(np.ceil(max_lag / step))
    lags = np.arange(-n_lag, n_lag + 1) * step
    ph = np.outer(om, lags)
    # Re{C e^{-j w lag}} as two real matmuls
    G = C.real @ np.cos(ph) + C.imag @ np.sin(ph)  # (nf, L)
    G /= bins.size

    def lag_of(rows):
        return lags[0] + _parabolic_uniform(rows) * step

    g_utt = G[act].sum(axis=0, keepdims=True)
    tau = float(lag_of(g_utt)[0])
    az_utt = float(_itd_to_az(tau, itd_table, az))

    frames = np.full(nf, np.nan)
    frames[m] = _itd_to_az(lag_of(G[m]), itd_table, az)

    S = C[act].sum(axis=0)
    ph_k = np.outer(om, itd_table)
    spectrum = (S.real @ np.cos(ph_k) + S.imag @ np.sin(ph_k)) / (act.sum() * bins.size)
    return {
        "azimuth": az_utt,
        "frames": frames,
        "spectrum": spectrum,
        "frames_per_estimate": 1,
        "itd": tau,
    }


# --------------------------------------------------------------------------- SRP-PHAT
def srp_phat_doa(
    x,
    steering,
    az_grid,
    fs: float = 16000,
    band=DEFAULT_BAND,
    mask=None,
    floor_db: float | None = -50.0,
) -> dict:
    """SRP-PHAT with HRTF steering.

    ``P_k = sum_frames sum_{f in band} Re{ C(f) conj(G_k(f)) }`` with
    ``C = X_L conj(X_R) / |.|`` (PHAT cross spectrum) and
    ``G_k = H_Lk conj(H_Rk) / |.|`` the phase-only interaural transfer of
    grid direction ``k`` (uniform weight over the band).  Utterance level:
    sum over active frames (``mask`` and energy above ``floor_db``), argmax
    with parabolic sub-grid interpolation.  Frame level: per-frame argmax
    (interpolated as well), NaN outside ``mask``.  ``spectrum`` is ``P_k``
    normalised to the number of active frames and bins (range [-1, 1]).
    """
    az, H, X, m, bins = _steered_inputs(x, az_grid, steering, mask, fs, band)
    nf = X.shape[1]
    act = _active(X, m, floor_db)
    C = _phat_cross(X, bins)  # (nf, Fb)
    Gk = H[:, 0, bins] * np.conj(H[:, 1, bins])
    Gk = Gk / (np.abs(Gk) + _EPS)  # (K, Fb)
    # Re{C conj(G)} = Cr Gr + Ci Gi
    Pf = (C.real @ Gk.real.T + C.imag @ Gk.imag.T) / bins.size  # (nf, K)
    spectrum = Pf[act].sum(axis=0) / act.sum()
    az_utt = float(_parabolic_peak(spectrum[None], az)[0])
    frames = np.full(nf, np.nan)
    frames[m] = _parabolic_peak(Pf[m], az)
    return {"azimuth": az_utt, "frames": frames, "spectrum": spectrum, "frames_per_estimate": 1}


# --------------------------------------------------------------------------- MUSIC
def _music_spectra(R: np.ndarray, A: np.ndarray, weighted: bool) -> np.ndarray:
    """Pseudo-spectra from covariances ``R`` (B, Fb, 2, 2) and manifold ``A`` (K, 2, Fb).

    Returns (B, K): per-bin pseudo-spectra normalised to max 1 over the grid,
    summed over bins (optionally weighted by the eigenvalue-spread confidence
    ``(l1 - l0) / (l1 + l0)``) and divided by the total weight.
    """
    lam, V = np.linalg.eigh(R)  # ascending
    en = V[..., :, 0]  # (B, Fb, 2) noise-subspace eigenvector
    proj = np.einsum("bfm,kmf->bkf", np.conj(en), A)
    d = np.abs(proj) ** 2  # in [0, 1]
    P = 1.0 / (d + 1e-10)
    P /= P.max(axis=1, keepdims=True)
    if weighted:
        w = (lam[..., 1] - lam[..., 0]) / (lam[..., 1] + lam[..., 0] + _EPS)  # (B, Fb)
        w = np.clip(w, 0.0, 1.0)
    else:
        w = np.ones(lam.shape[:2])
    tot = w.sum(axis=1)
    out = np.einsum("bkf,bf->bk", P, w) / np.where(tot > 0, tot, 1.0)[:, None]
    out[tot <= 0] = np.nan
    return out


def music_doa(
    x,
    steering,
    az_grid,
    fs: float = 16000,
    band=DEFAULT_BAND,
    n_sources: int = 1,
    n_frames_cov: int = 50,
    mask=None,
    loading: float = 1e-3,
    weighted: bool = True,
) -> dict:
    """Narrowband MUSIC per bin, combined over bins.

    For each bin ``f`` in ``band`` the 2x2 spatial covariance
    ``R_f = mean_frames X X^H + loading * tr(R_f)/2 * I`` is formed over the
    active frames (whole utterance; blocks of ``n_frames_cov`` consecutive
    frames for the frame-level output).  With two ears and one source the
    noise subspace is the eigenvector ``e_n`` of the smallest eigenvalue;
    the pseudo-spectrum ``1 / |e_n^H a_k(f)|^2`` uses
    ``a_k(f) = steering[k, :, f] / ||steering[k, :, f]||``.  Per-bin spectra
    are normalised to a maximum of 1 over the grid and averaged over bins,
    weighted by ``(l_max - l_min) / (l_max + l_min)`` if ``weighted`` (bins
    dominated by diffuse noise count less).  Argmax with parabolic sub-grid
    interpolation.  ``frames`` holds one estimate per block
    (``ceil(n_frames / n_frames_cov)`` entries; NaN for blocks with no active
    frame).  Diagonal loading only stabilises the decomposition (it does not
    change the eigenvectors).  Only ``n_sources=1`` is supported with 2 ears.
    """
    if n_sources != 1:
        raise ValueError("music_doa with 2 ears supports n_sources=1 only")
    az, H, X, m, bins = _steered_inputs(x, az_grid, steering, mask, fs, band)
    nf = X.shape[1]
    Xb = X[:, :, bins] * m[None, :, None]  # zero the excluded frames
    A = H[:, :, bins]
    A = A / (np.linalg.norm(A, axis=1, keepdims=True) + _EPS)

    # outer products per frame: (nf, Fb, 2, 2)
    Xt = np.moveaxis(Xb, 0, -1)  # (nf, Fb, 2)
    blk = max(1, int(n_frames_cov))
    nb = -(-nf // blk)
    padn = nb * blk - nf
    Xt = np.pad(Xt, ((0, padn), (0, 0), (0, 0))).reshape(nb, blk, bins.size, 2)
    Rb = np.einsum("btfi,btfj->bfij", Xt, np.conj(Xt))  # block sums (nb, Fb, 2, 2)
    cnt = np.pad(m, (0, padn)).reshape(nb, blk).sum(axis=1)
    R_utt = Rb.sum(axis=0, keepdims=True) / m.sum()
    Rb = Rb / np.maximum(cnt, 1)[:, None, None, None]

    def load(R):
        tr = np.real(R[..., 0, 0] + R[..., 1, 1])
        eye = np.eye(2)
        return R + (loading * tr / 2 + 1e-20)[..., None, None] * eye

    spectrum = _music_spectra(load(R_utt), A, weighted)[0]
    az_utt = float(_parabolic_peak(spectrum[None], az)[0])
    Pb = _music_spectra(load(Rb), A, weighted)
    Pb[cnt == 0] = np.nan
    frames = _parabolic_peak(Pb, az)
    return {
        "azimuth": az_utt,
        "frames": frames,
        "spectrum": spectrum,
        "frames_per_estimate": blk,
    }


# --------------------------------------------------------------------------- dispatch
def localise(
    method: str,
    x,
    *,
    steering=None,
    itd_table=None,
    az_grid,
    fs: float = 16000,
    mask=None,
    **kwargs,
) -> dict:
    """Run one of :data:`METHODS` on ``x`` (2, time).

    ``gcc-phat`` needs ``itd_table`` (derived with :func:`gcc_itd_table`
    when only ``steering`` is given); ``srp-phat`` and ``music`` need
    ``steering``.  ``mask`` is an optional ``(n_frames,)`` bool array of
    active STFT frames (``n_frames = 1 + len // 160``).  Extra keyword
    arguments go to the method (e.g. ``band``).
    """
    key = str(method).lower().replace("_", "-")
    if key not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    if key == "gcc-phat":
        if itd_table is None:
            if steering is None:
                raise ValueError("gcc-phat needs itd_table (or steering to derive it)")
            itd_table = gcc_itd_table(steering, fs=fs)
        return gcc_phat_doa(x, itd_table, az_grid, fs=fs, mask=mask, **kwargs)
    if steering is None:
        raise ValueError(f"{key} needs steering (K, 2, {N_BINS})")
    if key == "srp-phat":
        return srp_phat_doa(x, steering, az_grid, fs=fs, mask=mask, **kwargs)
    return music_doa(x, steering, az_grid, fs=fs, mask=mask, **kwargs)
