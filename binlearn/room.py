"""Binaural room impulse responses in shoebox rooms.

Early part: vectorised image-source model (Allen & Berkley 1979) with uniform absorption,
every image rendered through the listener's HRTF at its own direction. Late part: a
stochastic tail of random arrivals from uniformly random directions (through the same HRTF,
so interaural coherence is diffuse-field right) with an exponential envelope set by the
requested RT60 and matched in level to the image sources at the crossover.

Conventions: fs = 16000 Hz, channel 0 = left, channel 1 = right; azimuth degrees with
positive = listener's left; room frame x, y, z with the floor at z = 0; head yaw is the
azimuth of the head's forward direction in the room frame (counter-clockwise from +x).
"""
from __future__ import annotations

import functools

import numpy as np
from scipy import signal

from .hrtf import HRTF

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
_TAIL_MAX_DENSITY = 8000.0  # arrivals/s: above this the tail is already noise-like at 16 kHz
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
    t_x = float(np.clip(rt60 / 4, _CROSSOVER_MIN_S, _CROSSOVER_MAX_S))
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
    n = np.arange(-n_max, n_max + 1)
    q = np.array([0, 1])
    nn, qq = np.meshgrid(n, q, indexing="ij")
    nn, qq = nn.ravel(), qq.ravel()
    low, high = np.abs(nn - qq), np.abs(nn)
    order_axis = low + high
    keep = order_axis <= n_max
    nn, qq, low, high, order_axis = nn[keep], qq[keep], low[keep], high[keep], order_axis[keep]
    # sort per-axis entries by order so that the first image is the source itself
    srt = np.argsort(order_axis, kind="stable")
    nn, qq, low, high, order_axis = nn[srt], qq[srt], low[srt], high[srt], order_axis[srt]
    coords, gains = [], []
    for ax in range(3):  # three axes, not a loop over images
        coords.append((1 - 2 * qq) * src[ax] + 2 * nn * dim[ax])
        gains.append(b[2 * ax] ** low * b[2 * ax + 1] ** high)
    order = order_axis[:, None, None] + order_axis[None, :, None] + order_axis[None, None, :]
    ix, iy, iz = np.nonzero(order <= n_max)
    pos = np.stack([coords[0][ix], coords[1][iy], coords[2][iz]], axis=1)
    gain = gains[0][ix] * gains[1][iy] * gains[2][iz]
    orders = order[ix, iy, iz]
    srt = np.argsort(orders, kind="stable")
    return pos[srt], gain[srt], orders[srt]


# ------------------------------------------------------------------ rendering
def _relative_directions(points: np.ndarray, head_pos: np.ndarray, head_yaw_deg: float):
    """az (deg, wrapped to (-180, 180]), el (deg), distance (m) of points seen from the head."""
    d = points - head_pos
    r = np.linalg.norm(d, axis=-1)
    az = np.rad2deg(np.arctan2(d[:, 1], d[:, 0])) - head_yaw_deg
    az = 180.0 - np.mod(180.0 - az, 360.0)  # wrap to (-180, 180]
    el = np.rad2deg(np.arcsin(np.clip(d[:, 2] / np.maximum(r, 1e-12), -1.0, 1.0)))
    return az, el, r


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
    az, el, r = _relative_directions(src[None], head, yaw)
    if length is None:
        length = _default_length(0.0, r[0] / C_SOUND, fs)
    return _render_direct(hrtf, az[0], el[0], r[0] / C_SOUND, 1.0 / (4 * np.pi * r[0]), int(length), fs)


def _render_direct(hrtf: HRTF, az, el, delay, amp, length: int, fs: int) -> np.ndarray:
    """(2, length) one arrival, rendered on a short buffer (HRIRs are short) and zero-padded."""
    short = min(length, int(np.ceil(delay * fs)) + 1024)
    out = np.zeros((2, length))
    out[:, :short] = hrtf.render([az], [el], [delay], [amp], short)
    return out


def _check_fs(fs, hrtf):
    if fs != hrtf.fs:
        raise RoomError(f"fs {fs} does not match the HRTF's sampling rate {hrtf.fs}")


def binaural_rir(room_dim, source, head_pos, head_yaw_deg, rt60_s, hrtf: HRTF, *, rng: np.random.Generator,
                 fs: int = FS, max_order=None, late_tail: bool = True, length=None) -> tuple[np.ndarray, dict]:
    """(2, L) float64 binaural RIR and an info dict.

    Image sources (uniform Eyring absorption for ``rt60_s``) are each rendered through
    ``hrtf`` at their direction relative to the head (az = atan2(dy, dx) - yaw, el =
    asin(dz / r)), delay r / c, gain beta-product / (4 pi r). ``rt60_s`` = 0: direct path only.

    With ``late_tail`` the ISM is used only up to the distance of the nearest missing image
    (order max_order + 1), where it is still complete; beyond that a stochastic tail takes
    over: Poisson arrivals (density 4 pi c^3 t^2 / V, capped at 8000/s) from uniform random
    directions through the same HRTF, random signs, energy envelope exp(-13.8 t / RT60) whose
    level is fitted to the image-source energy between half the crossover time and the
    crossover. Without ``late_tail`` all images of order <= max_order are kept (plain ISM).

    max_order defaults to ``max_order_for(room_dim, rt60_s)``; L to 1.2 RT60 fs (>= 4096).
    info: drr_db (direct vs the rest, both ears; inf if anechoic), max_order, n_images (ISM
    arrivals rendered, direct included), n_tail, alpha, direct_delay_s, crossover_s.
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
    pos, gain, _ = image_sources(dim, src, order, np.full(6, beta))
    crossover = np.inf
    if late_tail and rt60 > 0:
        # drop images beyond the crossover before computing their directions
        crossover = _first_missing_distance(dim, src, head, order) / C_SOUND
        keep = np.linalg.norm(pos - head, axis=-1) / C_SOUND < crossover
        keep[0] = True
        pos, gain = pos[keep], gain[keep]
    az, el, r = _relative_directions(pos, head, yaw)
    t = r / C_SOUND
    direct_delay = float(t[0])
    if length is None:
        length = _default_length(rt60, direct_delay, fs)
    length = int(length)
    if length <= 0:
        raise RoomError(f"length must be positive, got {length}")
    amp = gain / (4 * np.pi * r)
    direct = _render_direct(hrtf, az[0], el[0], t[0], amp[0], length, fs)
    rir = direct.copy()
    sos = _dc_block(fs)
    if az.size > 1:
        # Reflections only: the direct path stays exactly ``direct_rir``.
        refl = signal.sosfilt(sos, hrtf.render(az[1:], el[1:], t[1:], amp[1:], length), axis=-1)
        rir += refl
    n_tail = 0
    if late_tail and rt60 > 0 and crossover < length / fs:
        tail_arr = _late_tail(crossover, rt60, float(np.prod(dim)), length / fs, rng)
        n_tail = tail_arr[0].size
        # statistically placed arrivals: nearest-sample placement is enough (and 32x cheaper)
        tail = signal.sosfilt(sos, hrtf.render(*tail_arr, length, interp="nearest"), axis=-1)
        if az.size > 1:
            tail *= _tail_scale(refl, tail, t[1:], crossover, rt60, fs)
        rir += tail
    rest = float(np.sum((rir - direct) ** 2))
    drr = 10 * np.log10(np.sum(direct**2) / rest) if rest > 1e-20 * np.sum(direct**2) else np.inf
    info = {
        "drr_db": float(drr),
        "max_order": order,
        "n_images": int(az.size),
        "n_tail": int(n_tail),
        "alpha": float(alpha),
        "direct_delay_s": direct_delay,
        "crossover_s": float(crossover),
    }
    return rir, info


@functools.lru_cache(maxsize=8)  # designing the filter costs as much as applying it
def _dc_block(fs: int) -> np.ndarray:
    """2nd-order Butterworth high-pass at 40 Hz (sos) for the reverberant part.

    Image sources all have positive amplitude, so their sum carries a large coherent
    near-DC component (energy piling up far above the incoherent sum of the images, which
    also biases the tail-level fit); Allen & Berkley recommend high-passing ISM responses.
    """
    return signal.butter(2, 40.0, "highpass", fs=fs, output="sos")  # cached: do not modify


def _tail_scale(refl: np.ndarray, tail: np.ndarray, t_refl: np.ndarray, crossover: float, rt60: float,
                fs: int) -> float:
    """Amplitude factor matching the rendered tail to the rendered image sources.

    Both are modelled as energy A exp(-k t): A_ism is fitted on the reflections in
    [crossover / 2, crossover), A_tail on the whole rendered tail. Falls back to 1 (the
    diffuse-field level c / (4 pi V)) if fewer than 20 images lie in the window.
    """
    k = 2 * _DECAY / rt60
    t0, t1 = crossover / 2, crossover
    if np.count_nonzero((t_refl >= t0) & (t_refl < t1)) < 20:
        return 1.0
    i0, i1 = int(t0 * fs), int(t1 * fs)
    e_ism = float(np.sum(refl[:, i0:i1] ** 2))
    e_tail = float(np.sum(tail[:, i1:] ** 2))
    t_end = tail.shape[1] / fs
    m_ism = np.exp(-k * t0) - np.exp(-k * t1)
    m_tail = np.exp(-k * t1) - np.exp(-k * t_end)
    if e_tail <= 0 or m_ism <= 0 or m_tail <= 0:
        return 1.0
    return float(np.sqrt((e_ism / m_ism) / (e_tail / m_tail)))


def _late_tail(crossover: float, rt60: float, volume: float, duration: float, rng: np.random.Generator):
    """Stochastic tail arrivals (az, el, t, amp), each (m,), from ``crossover`` to ``duration``.

    Poisson arrivals with density min(4 pi c^3 t^2 / V, 8000/s) (drawn by thinning),
    uniform directions on the sphere, random signs; energy per second c / (4 pi V) exp(-k t)
    with k = 13.8 / RT60 (the diffuse-field expectation of the image-source energy).
    """
    k = 2 * _DECAY / rt60
    level = C_SOUND / (4 * np.pi * volume)
    n_cand = rng.poisson(_TAIL_MAX_DENSITY * (duration - crossover))
    tt = rng.uniform(crossover, duration, n_cand)
    density = np.minimum(4 * np.pi * C_SOUND**3 * tt**2 / volume, _TAIL_MAX_DENSITY)
    keep = rng.uniform(0, _TAIL_MAX_DENSITY, n_cand) < density
    tt, density = tt[keep], density[keep]
    amp = rng.choice([-1.0, 1.0], tt.size) * np.sqrt(level * np.exp(-k * tt) / density)
    az = rng.uniform(-180.0, 180.0, tt.size)
    el = np.rad2deg(np.arcsin(rng.uniform(-1.0, 1.0, tt.size)))  # uniform on the sphere
    return az, el, tt, amp


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
