"""Binaural room impulse responses in shoebox rooms.

Early part: vectorised image-source model (Allen & Berkley 1979) with uniform absorption,
every image rendered through the listener's HRTF at its own direction (and high-passed at
40 Hz, as Allen & Berkley advise). Late part: a stochastic tail, Gaussian noise with the
listener's diffuse-field cross-spectrum (what many arrivals from uniformly random directions
through the same HRTF add up to, so interaural coherence is diffuse-field right), under an
exponential envelope set by the requested RT60 and matched in level to the image sources at
the crossover.

Conventions: fs = 16000 Hz, channel 0 = left, channel 1 = right; azimuth degrees with
positive = listener's left; room frame x, y, z with the floor at z = 0; head yaw is the
azimuth of the head's forward direction in the room frame (counter-clockwise from +x).
"""
from __future__ import annotations

import functools

import numpy as np
from scipy import signal

from .hrtf import HRTF, diffuse_field_noise

__all__ = [
    "RoomError",
    "C_SOUND",
    "absorption_from_rt60",
    "max_order_for",
    "image_sources",
    "binaural_rir",
    "direct_rir",
    "sample_geometry",
]

C_SOUND = 343.0
FS = 16000
# 60 dB of energy decay: RT60 = 24 ln(10) V / (c S a). 24 ln 10 / 343 = 0.1611 (the "0.161").
_SABINE_K = 24.0 * np.log(10.0) / C_SOUND
_DECAY = 3.0 * np.log(10.0)  # amplitude decays as exp(-_DECAY t / RT60): -60 dB at t = RT60
_CROSSOVER_MAX_S = 0.08  # image sources cover at most the first 80 ms (early reflections)
_CROSSOVER_MIN_S = 0.025


class RoomError(ValueError):
    """Invalid room, geometry or reverberation parameters."""


# ------------------------------------------------------------------ validation
def _room(room_dim) -> np.ndarray:
    dim = np.asarray(room_dim, dtype=np.float64)
    if dim.shape != (3,) or not np.all(np.isfinite(dim)) or np.any(dim <= 0):
        raise RoomError(f"room_dim must be three positive lengths in metres, got {room_dim!r}")
    return dim


def _point_inside(p, dim: np.ndarray, what: str) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    if p.shape != (3,) or not np.all(np.isfinite(p)):
        raise RoomError(f"{what} must be a 3-D point, got {p!r}")
    if np.any(p <= 0) or np.any(p >= dim):
        raise RoomError(f"{what} {np.round(p, 3).tolist()} is not inside the room {_fmt_room(dim)}")
    return p


def _fmt_room(dim) -> str:
    return "x".join(f"{float(v):.1f}" for v in dim) + " m"


def _rt60(rt60_s) -> float:
    rt60 = float(rt60_s)
    if not np.isfinite(rt60) or rt60 < 0:
        raise RoomError(f"RT60 must be >= 0 seconds, got {rt60_s!r}")
    return rt60


# ------------------------------------------------------------------ acoustics
def absorption_from_rt60(room_dim, rt60_s, method: str = "eyring") -> float:
    """Uniform energy absorption coefficient alpha in (0, 1] giving ``rt60_s``.

    Sabine: alpha = 0.161 V / (S RT60); Eyring: alpha = 1 - exp(-0.161 V / (S RT60)).
    RT60 = 0 means anechoic (alpha = 1). RoomError for negative RT60, unknown method, or a
    Sabine alpha above 1 (RT60 too short for the room).
    """
    dim = _room(room_dim)
    rt60 = _rt60(rt60_s)
    if method not in ("eyring", "sabine"):
        raise RoomError(f"unknown absorption method {method!r}: use 'eyring' or 'sabine'")
    if rt60 == 0:
        return 1.0
    vol = float(np.prod(dim))
    surf = 2.0 * float(dim[0] * dim[1] + dim[0] * dim[2] + dim[1] * dim[2])
    x = _SABINE_K * vol / (surf * rt60)
    if method == "sabine":
        if x > 1.0:
            raise RoomError(f"RT60 {rt60:g} s impossible in room {_fmt_room(dim)} with Sabine: alpha would be {x:.2f} > 1")
        return x
    return float(-np.expm1(-x))


def _axis_distances(n_max: int, length: float, src: float, rcv: float) -> np.ndarray:
    """(n_max+1,) smallest |image - receiver| along one axis for per-axis reflection order k."""
    k = np.arange(n_max + 1)
    # order k images: k even -> src +- k L; k odd -> -src + (k+1) L or -src - (k-1) L
    even = np.minimum(np.abs(src + k * length - rcv), np.abs(src - k * length - rcv))
    odd = np.minimum(np.abs(-src + (k + 1) * length - rcv), np.abs(-src - (k - 1) * length - rcv))
    return np.where(k % 2 == 0, even, odd)


def _first_missing_distance(dim, source, receiver, max_order: int) -> float:
    """Distance (m) of the nearest image of order max_order + 1.

    Images of order <= max_order are complete up to this distance (removing a reflection
    from an image always brings it closer, so order-(N+1) minimum < all higher orders).
    """
    n = max_order + 1
    d = [_axis_distances(n, dim[i], source[i], receiver[i]) for i in range(3)]
    kx, ky = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    kz = n - kx - ky
    ok = kz >= 0
    kx, ky, kz = kx[ok], ky[ok], kz[ok]
    return float(np.sqrt(d[0][kx] ** 2 + d[1][ky] ** 2 + d[2][kz] ** 2).min())


def _crossover_target(rt60: float) -> float:
    """Intended ISM/tail crossover time (s): RT60 / 4, kept within 25-80 ms (early reflections)."""
    return float(np.clip(rt60 / 4, _CROSSOVER_MIN_S, _CROSSOVER_MAX_S))


def max_order_for(room_dim, rt60_s, cap: int = 20) -> int:
    """Image-source order for ``binaural_rir``: the ISM covers the early reflections, up to
    a crossover time t_x = clip(RT60 / 4, 25 ms, 80 ms); the stochastic tail does the rest.

    Order N images fill (for any source/listener) at least the sphere inscribed in the
    lattice octahedron |i|Lx + |j|Ly + |k|Lz <= ..., of radius ~ N / sqrt(sum 1/L^2) minus a
    room diagonal of slack for source/listener offsets; we take the smallest N covering
    c t_x, capped at ``cap`` (each order adds ~ 4 N^2 images). RT60 = 0 -> 0 (direct only).
    """
    dim = _room(room_dim)
    rt60 = _rt60(rt60_s)
    if rt60 == 0:
        return 0
    t_x = _crossover_target(rt60)
    reach = C_SOUND * t_x + float(np.linalg.norm(dim)) / 2
    n = int(np.ceil(reach * np.sqrt(np.sum(1.0 / dim**2))))
    return int(np.clip(n, 1, cap))


def image_sources(room_dim, source, max_order: int, beta) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised shoebox image-source model (Allen & Berkley).

    Per axis, image coordinate x = (1 - 2q) xs + 2 n Lx with q in {0, 1}, n in [-N, N];
    reflections off the low wall |n - q|, off the high wall |n|. Images with total order
    <= max_order are kept. beta: (6,) (or scalar) pressure reflection coefficients
    sqrt(1 - alpha) for walls x0, x1, y0, y1, z0, z1.

    Returns positions (n, 3), gains (n,) = product of beta^reflections (the 1/(4 pi r)
    spreading is applied by the caller, ``binaural_rir``), orders (n,) int.
    Order 0 (the source itself) comes first.
    """
    dim = _room(room_dim)
    src = _point_inside(source, dim, "source")
    if int(max_order) != max_order or max_order < 0:
        raise RoomError(f"max_order must be a non-negative integer, got {max_order!r}")
    n_max = int(max_order)
    b = np.broadcast_to(np.asarray(beta, dtype=np.float64), (6,))
    if np.any(~np.isfinite(b)) or np.any(b < 0) or np.any(b > 1):
        raise RoomError(f"beta must be 6 reflection coefficients in [0, 1], got {beta!r}")
    pos, gain, orders = _images(dim, src, n_max, b)
    srt = np.argsort(orders, kind="stable")
    return pos[srt], gain[srt], orders[srt]


def _images(dim: np.ndarray, src: np.ndarray, n_max: int, b: np.ndarray):
    """``image_sources`` without validation or the sort by order; the source still comes first."""
    nn, qq, low, high, ix, iy, iz, orders = _image_lattice(n_max)
    coords, gains = [], []
    for ax in range(3):  # three axes, not a loop over images
        coords.append((1 - 2 * qq) * src[ax] + 2 * nn * dim[ax])
        gains.append(b[2 * ax] ** low * b[2 * ax + 1] ** high)
    pos = np.empty((ix.size, 3))
    pos[:, 0], pos[:, 1], pos[:, 2] = coords[0][ix], coords[1][iy], coords[2][iz]
    gain = gains[0][ix] * gains[1][iy] * gains[2][iz]
    return pos, gain, orders


@functools.lru_cache(maxsize=32)
def _image_lattice(n_max: int):
    """The integer part of the image-source model, which depends on the order alone (cached:
    cached arrays are read-only by convention).

    Per axis, entries (n, q) with reflection counts low = |n - q|, high = |n| sorted by
    order (so the source comes first); ix, iy, iz index the per-axis entries of each image
    of total order <= n_max, in C order, and orders is that total.
    """
    n = np.arange(-n_max, n_max + 1)
    nn, qq = np.meshgrid(n, np.array([0, 1]), indexing="ij")
    nn, qq = nn.ravel(), qq.ravel()
    low, high = np.abs(nn - qq), np.abs(nn)
    order_axis = low + high
    keep = order_axis <= n_max
    srt = np.argsort(order_axis[keep], kind="stable")
    nn, qq, low, high, order_axis = (a[keep][srt] for a in (nn, qq, low, high, order_axis))
    order = order_axis[:, None, None] + order_axis[None, :, None] + order_axis[None, None, :]
    ix, iy, iz = np.nonzero(order <= n_max)  # C order: (0, 0, 0), the source, comes first
    return nn, qq, low, high, ix, iy, iz, order[ix, iy, iz]


# ------------------------------------------------------------------ rendering
def _head_frame(points: np.ndarray, head_pos: np.ndarray, head_yaw_deg: float):
    """(n, 3) unit vectors toward points in the head frame (x ahead, y left, z up), (n,) distances (m).

    The room frame is rotated by -yaw about z (no per-point trigonometry): the direction at
    azimuth atan2(dy, dx) - yaw, elevation asin(dz / r).
    """
    d = points - head_pos
    r = np.sqrt(np.einsum("ij,ij->i", d, d))
    c, s = np.cos(np.deg2rad(head_yaw_deg)), np.sin(np.deg2rad(head_yaw_deg))
    u = np.empty_like(d)
    u[:, 0] = c * d[:, 0] + s * d[:, 1]
    u[:, 1] = c * d[:, 1] - s * d[:, 0]
    u[:, 2] = d[:, 2]
    u /= np.maximum(r, 1e-12)[:, None]
    return u, r


def _default_length(rt60: float, direct_delay_s: float, fs: int) -> int:
    """1.2 RT60 (at least 4096 samples), and always the direct path plus 1024 samples."""
    return int(max(np.ceil(1.2 * rt60 * fs), 4096, np.ceil(direct_delay_s * fs) + 1024))


def _check_geometry(room_dim, source, head_pos, head_yaw_deg, hrtf):
    dim = _room(room_dim)
    src = _point_inside(source, dim, "source")
    head = _point_inside(head_pos, dim, "head")
    yaw = float(head_yaw_deg)
    if not np.isfinite(yaw):
        raise RoomError(f"head_yaw_deg must be finite, got {head_yaw_deg!r}")
    if not isinstance(hrtf, HRTF):
        raise RoomError(f"hrtf must be a binlearn.hrtf.HRTF, got {type(hrtf).__name__}")
    dist = float(np.linalg.norm(src - head))
    if dist < 0.15:
        raise RoomError(f"source only {dist:.3f} m from the head centre: need at least 0.15 m")
    return dim, src, head, yaw


def direct_rir(room_dim, source, head_pos, head_yaw_deg, hrtf: HRTF, fs: int = FS, length=None) -> np.ndarray:
    """(2, L) direct path only (the clean teacher): same delay and gain as in ``binaural_rir``.

    Default L is what ``binaural_rir`` would use for an anechoic room; pass ``length`` to
    match a reverberant RIR.
    """
    dim, src, head, yaw = _check_geometry(room_dim, source, head_pos, head_yaw_deg, hrtf)
    _check_fs(fs, hrtf)
    u, r = _head_frame(src[None], head, yaw)
    if length is None:
        length = _default_length(0.0, r[0] / C_SOUND, fs)
    return _render_direct(hrtf, u, r[0] / C_SOUND, 1.0 / (4 * np.pi * r[0]), int(length), fs)


def _render_direct(hrtf: HRTF, u: np.ndarray, delay: float, amp: float, length: int, fs: int) -> np.ndarray:
    """(2, length) one arrival from direction u (1, 3), zero-padded ``_render_direct_short``."""
    short = _render_direct_short(hrtf, u, delay, amp, length, fs)
    out = np.zeros((2, length))
    out[:, :short.shape[1]] = short
    return out


def _render_direct_short(hrtf: HRTF, u: np.ndarray, delay: float, amp: float, length: int, fs: int) -> np.ndarray:
    """(2, min(length, delay + 1024 samples)): the direct path on a short buffer (HRIRs are short)."""
    short = min(length, int(np.ceil(delay * fs)) + 1024)
    return hrtf.render_vectors(u[:1], np.array([delay]), np.array([amp]), short)


def _check_fs(fs, hrtf):
    if fs != hrtf.fs:
        raise RoomError(f"fs {fs} does not match the HRTF's sampling rate {hrtf.fs}")


def binaural_rir(room_dim, source, head_pos, head_yaw_deg, rt60_s, hrtf: HRTF, *, rng: np.random.Generator,
                 fs: int = FS, max_order=None, late_tail: bool = True, length=None) -> tuple[np.ndarray, dict]:
    """(2, L) float64 binaural RIR and an info dict.

    Image sources (uniform Eyring absorption for ``rt60_s``) are each rendered through
    ``hrtf`` at their direction relative to the head (az = atan2(dy, dx) - yaw, el =
    asin(dz / r)), delay r / c, gain beta-product / (4 pi r). ``rt60_s`` = 0: direct path only.

    With ``late_tail`` the ISM is used only up to the crossover: clip(RT60 / 4, 25 ms, 80 ms),
    or earlier if the nearest missing image (order max_order + 1) comes first (the ISM is
    complete up to there); beyond that a stochastic tail takes
    over: Gaussian noise with the listener's diffuse-field two-ear cross-spectrum (see
    ``_late_tail``), energy envelope exp(-13.8 t / RT60) whose level is fitted to the
    image-source energy between half the crossover time and the crossover. Without
    ``late_tail`` all images of order <= max_order are kept (plain ISM). The reflections
    (not the direct path) are high-passed at 40 Hz (see ``_dc_block``).

    max_order defaults to ``max_order_for(room_dim, rt60_s)``; L to 1.2 RT60 fs (>= 4096).
    info: drr_db (direct vs the rest, both ears; inf if anechoic), max_order, n_images (ISM
    arrivals rendered, direct included), n_tail (samples of stochastic tail, 0 without one),
    alpha, direct_delay_s, crossover_s.
    """
    dim, src, head, yaw = _check_geometry(room_dim, source, head_pos, head_yaw_deg, hrtf)
    _check_fs(fs, hrtf)
    rt60 = _rt60(rt60_s)
    alpha = absorption_from_rt60(dim, rt60, "eyring")
    if rt60 == 0:
        order = 0
    elif max_order is None:
        order = max_order_for(dim, rt60)
    else:
        if int(max_order) != max_order or max_order < 0:
            raise RoomError(f"max_order must be a non-negative integer, got {max_order!r}")
        order = int(max_order)
    beta = np.sqrt(1.0 - alpha)
    pos, gain, _ = _images(dim, src, order, np.full(6, beta))
    crossover = np.inf
    if late_tail and rt60 > 0:
        # The ISM is complete up to the nearest missing image; it hands over at the intended
        # crossover if that comes first (the order is rounded up, so it usually does).
        crossover = min(_first_missing_distance(dim, src, head, order) / C_SOUND, _crossover_target(rt60))
        # drop images beyond the crossover before computing their directions
        d = pos - head
        keep = np.einsum("ij,ij->i", d, d) < (crossover * C_SOUND) ** 2
        keep[0] = True
        pos, gain = pos[keep], gain[keep]
    u, r = _head_frame(pos, head, yaw)
    t = r / C_SOUND
    direct_delay = float(t[0])
    if length is None:
        length = _default_length(rt60, direct_delay, fs)
    length = int(length)
    if length <= 0:
        raise RoomError(f"length must be positive, got {length}")
    amp = gain / (4 * np.pi * r)
    direct = _render_direct_short(hrtf, u, t[0], amp[0], length, fs)
    # Reflections (the direct path stays exactly ``direct_rir``), high-passed (see _dc_block).
    refl = _dc_blocked(hrtf.render_vectors(u[1:], t[1:], amp[1:], length), fs)
    n_tail = 0
    if late_tail and rt60 > 0 and crossover < length / fs:
        rest = _late_tail(hrtf, crossover, rt60, float(np.prod(dim)), length, fs, rng)
        n_tail = length - _tail_start(crossover, length, fs)
        if u.shape[0] > 1:
            rest *= _tail_scale(refl, rest, t[1:], crossover, rt60, fs)
        rest += refl  # in place: a RIR-length temporary less
    else:
        rest = refl
    e_rest, e_direct = _energy(rest), _energy(direct)
    drr = 10 * np.log10(e_direct / e_rest) if e_rest > 1e-20 * e_direct else np.inf
    rir = rest
    rir[:, :direct.shape[1]] += direct
    info = {
        "drr_db": float(drr),
        "max_order": order,
        "n_images": int(u.shape[0]),
        "n_tail": int(n_tail),
        "alpha": float(alpha),
        "direct_delay_s": direct_delay,
        "crossover_s": float(crossover),
    }
    return rir, info


def _energy(x: np.ndarray) -> float:
    """Sum of squares of a 2-D array without a squared temporary."""
    return float(np.einsum("ij,ij->", x, x))


@functools.lru_cache(maxsize=8)  # designing the filter costs as much as applying it
def _dc_block(fs: int) -> tuple[np.ndarray, int]:
    """2nd-order Butterworth high-pass at 40 Hz (sos) for the image sources, and the number
    of samples after which its impulse response has decayed below 1e-18 (float64 rounding).

    Image sources all have positive amplitude, so their sum carries a large coherent
    near-DC component (energy piling up far above the incoherent sum of the images, which
    also biases the tail-level fit); Allen & Berkley recommend high-passing ISM responses.
    The stochastic tail has random signs (zero mean) and needs no such filter.
    """
    sos = signal.butter(2, 40.0, "highpass", fs=fs, output="sos")  # cached: do not modify
    radius = float(np.max(np.abs(np.roots(sos[0, 3:]))))
    # envelope ~ n r^n for the Butterworth pole pair: 20 % margin over r^n alone
    return sos, int(1.2 * np.log(1e-18) / np.log(radius))


def _dc_blocked(x: np.ndarray, fs: int) -> np.ndarray:
    """``x`` (2, L) high-passed by ``_dc_block``, filtering only as far as x is non-zero plus
    the filter's decay (early reflections occupy a fraction of a long RIR)."""
    sos, decay = _dc_block(fs)
    nz = np.flatnonzero(np.any(x != 0, axis=0))
    if nz.size == 0:
        return x
    end = min(x.shape[1], int(nz[-1]) + 1 + decay)
    out = np.zeros_like(x)
    out[:, :end] = signal.sosfilt(sos, x[:, :end], axis=-1)
    return out


def _tail_scale(refl: np.ndarray, tail: np.ndarray, t_refl: np.ndarray, crossover: float, rt60: float,
                fs: int) -> float:
    """Amplitude factor matching the rendered tail to the rendered image sources.

    Both are modelled as energy A exp(-k t): A_ism is fitted on the (high-passed, see
    ``_dc_block``) reflections in [crossover / 2, crossover), A_tail on the whole rendered
    tail (zero-mean already: random signs). Falls back to 1 (the diffuse-field level
    c / (4 pi V)) if fewer than 20 images lie in the window.
    """
    k = 2 * _DECAY / rt60
    t0, t1 = crossover / 2, crossover
    if np.count_nonzero((t_refl >= t0) & (t_refl < t1)) < 20:
        return 1.0
    i0, i1 = int(t0 * fs), int(t1 * fs)
    e_ism = _energy(refl[:, i0:i1])
    e_tail = _energy(tail[:, i1:])
    t_end = tail.shape[1] / fs
    m_ism = np.exp(-k * t0) - np.exp(-k * t1)
    m_tail = np.exp(-k * t1) - np.exp(-k * t_end)
    if e_tail <= 0 or m_ism <= 0 or m_tail <= 0:
        return 1.0
    return float(np.sqrt((e_ism / m_ism) / (e_tail / m_tail)))


def _tail_start(crossover: float, length: int, fs: int) -> int:
    """First sample of the stochastic tail (at or after the crossover time)."""
    return min(length, int(np.ceil(crossover * fs)))


def _late_tail(hrtf: HRTF, crossover: float, rt60: float, volume: float, length: int, fs: int,
               rng: np.random.Generator) -> np.ndarray:
    """(2, length) stochastic late reverberation, zero before ``crossover`` (s).

    Gaussian noise whose 2x2 cross-spectrum is the listener's diffuse-field one
    (``diffuse_field_noise``): the limit of a dense sum of arrivals from uniformly random
    directions through the same HRTF, so the interaural coherence is right (high at low
    frequencies, low above ~1 kHz). Energy per second c / (4 pi V) exp(-k t) with
    k = 13.8 / RT60 (the diffuse-field expectation of the image-source energy; the caller
    refits the level to the image sources), with a 1 ms raised-cosine onset.
    One FFT of the RIR length instead of ~10^4 rendered arrivals.
    """
    no_dc = np.ones(length // 2 + 1)
    no_dc[0] = 0.0
    y = diffuse_field_noise(hrtf, length, rng, no_dc)
    i0 = _tail_start(crossover, length, fs)
    k = 2 * _DECAY / rt60
    level = C_SOUND / (4 * np.pi * volume)
    t = np.arange(i0, length) / fs
    env = np.sqrt(level / fs * np.exp(-k * t))  # per-sample variance = energy per second / fs
    ramp = min(env.size, max(1, fs // 1000))
    env[:ramp] *= 0.5 - 0.5 * np.cos(np.pi * (np.arange(ramp) + 0.5) / ramp)
    y[:, :i0] = 0.0
    y[:, i0:] *= env
    return y


# ------------------------------------------------------------------ geometry sampling
def sample_geometry(rng: np.random.Generator, room_dim, distance_range, az_deg, el_deg=0.0, margin=0.5,
                    tries: int = 1000):
    """Random head position/yaw and a source at (az, el) relative to the head.

    Head at z ~ U(1.2, 1.8) m (clipped to the margins), x/y uniform, yaw U(-180, 180);
    distance U(distance_range) (a scalar means fixed). Head and source stay ``margin`` m from
    every wall. ``tries`` candidates are drawn at once and the first valid one is used.
    Returns head_pos (3,), head_yaw_deg, source (3,). RoomError if impossible.
    """
    dim = _room(room_dim)
    dr = np.atleast_1d(np.asarray(distance_range, dtype=np.float64))
    if dr.size == 1:
        dr = np.array([dr[0], dr[0]])
    if dr.shape != (2,) or not np.all(np.isfinite(dr)) or dr[0] <= 0 or dr[1] < dr[0]:
        raise RoomError(f"distance_range must be a positive distance or (min, max), got {distance_range!r}")
    if margin < 0 or np.any(dim <= 2 * margin):
        raise RoomError(f"room {_fmt_room(dim)} too small for a {margin:g} m wall margin")
    lo, hi = np.full(3, margin), dim - margin
    inner_diag = float(np.linalg.norm(hi - lo))
    too_small = RoomError(f"room {_fmt_room(dim)} too small for talker distance {dr[0]:g} m")
    if dr[0] > inner_diag:
        raise too_small
    zlo, zhi = max(1.2, lo[2]), min(1.8, hi[2])
    if zlo > zhi:  # low ceiling: anywhere within the margins
        zlo, zhi = lo[2], hi[2]
    head = np.stack([rng.uniform(lo[0], hi[0], tries), rng.uniform(lo[1], hi[1], tries),
                     rng.uniform(zlo, zhi, tries)], axis=1)
    yaw = rng.uniform(-180.0, 180.0, tries)
    dist = rng.uniform(dr[0], dr[1], tries)
    a = np.deg2rad(yaw + float(az_deg))
    e = np.deg2rad(float(el_deg))
    src = head + dist[:, None] * np.stack([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a),
                                            np.full(tries, np.sin(e))], axis=1)
    ok = np.all((src >= lo) & (src <= hi), axis=1)
    if not np.any(ok):
        raise too_small
    i = int(np.argmax(ok))
    yaw_i = float(180.0 - np.mod(180.0 - yaw[i], 360.0))
    return head[i], yaw_i, src[i]
