"""Tests for binlearn.hrtf: spherical head cues, fast rendering, listeners, SOFA I/O."""
import numpy as np
import pytest
from scipy import signal

from binlearn.hrtf import (HRTFError, SofaHRTF, SphericalHead, load_hrtf, sample_listener,
                           write_sofa)

FS = 16000


def _itd_seconds(h: np.ndarray, n_fft: int = 8192) -> float:
    """ITD (s) of one (2, n) HRIR pair from the interaural group delay, 2-7 kHz.

    Positive when the left ear leads. Group delay (slope of the interaural phase), not the
    band-passed cross-correlation peak: the latter follows the *phase* delay of the head-shadow
    filter, which lags the far ear by ~40 us at 4 kHz. The Woodworth formula is the
    high-frequency ITD; below ~1 kHz a real sphere's ITD is ~1.5x larger (Kuhn 1977) -
    physics, not a model error.
    """
    spec = np.fft.rfft(h, n_fft, axis=-1)
    w = 2 * np.pi * np.fft.rfftfreq(n_fft, 1 / FS)
    band = (w >= 2 * np.pi * 2000) & (w <= 2 * np.pi * 7000)
    phase = np.unwrap(np.angle(spec[1] * np.conj(spec[0])))[band]  # = -w * (t_right - t_left) + ...
    slope = np.polyfit(w[band], phase, 1)[0]
    return -slope


def _band_energy_db(h: np.ndarray, lo: float, hi: float, n_fft: int = 1024) -> np.ndarray:
    spec = np.abs(np.fft.rfft(h, n_fft, axis=-1)) ** 2
    f = np.fft.rfftfreq(n_fft, 1 / FS)
    sel = (f >= lo) & (f <= hi)
    return 10 * np.log10(spec[..., sel].mean(-1))


def test_itd_matches_woodworth():
    head = SphericalHead(ear_az_deg=90.0)
    az = np.arange(-90, 91, 10.0)
    hrirs = head.hrir(az, 0.0, 256)
    itd = np.array([_itd_seconds(h) for h in hrirs])
    np.testing.assert_allclose(itd, head.woodworth_itd(az), atol=30e-6)
    assert itd[-1] > 0.0005  # +90 deg: left leads by ~0.66 ms


def test_ild_toward_near_ear_and_grows_with_frequency():
    head = SphericalHead()
    h = head.hrir([60.0, -60.0], [0.0, 0.0], 256)
    ild_low = _band_energy_db(h, 350, 700)
    ild_high = _band_energy_db(h, 3000, 5000)
    ild_low = ild_low[:, 0] - ild_low[:, 1]
    ild_high = ild_high[:, 0] - ild_high[:, 1]
    assert ild_high[0] > 6.0 and ild_low[0] > 0  # +60 deg: left louder
    assert ild_high[1] < -6.0 and ild_low[1] < 0  # mirror image
    assert ild_high[0] > ild_low[0] + 3.0
    np.testing.assert_allclose(ild_high[0], -ild_high[1], atol=1e-6)  # symmetric head


def test_transfer_matches_hrir_spectrum():
    head = SphericalHead(perturb_db=1.5, seed=4)
    az, el = np.array([0.0, 45.0, -120.0, 170.0]), np.array([0.0, 20.0, -30.0, 60.0])
    n_fft = 512
    w = 2 * np.pi * np.fft.rfftfreq(n_fft)
    spec = np.fft.rfft(head.hrir(az, el, 256), n_fft, axis=-1) * np.exp(1j * w * head.bulk_delay)
    ref = head.transfer(az, el, n_fft)
    band = np.fft.rfftfreq(n_fft, 1 / FS) < 6500  # the 32-tap sinc is exact up to ~0.8 Nyquist
    assert np.max(np.abs(spec - ref)[..., band]) < 0.01
    assert ref.shape == (4, 2, n_fft // 2 + 1) and ref.dtype == np.complex128


def test_render_equals_convolution_of_hrirs():
    head = SphericalHead(perturb_db=1.5, seed=1)
    az = np.array([30.0, -75.0, 150.0, 0.0])
    el = np.array([0.0, 10.0, -20.0, 45.0])
    g = np.array([1.0, -0.5, 0.3, 0.8])
    k = np.array([10, 57, 200, 333])  # integer sample offsets after the bulk delay
    length = 1024
    out = head.render(az, el, (k + head.bulk_delay) / FS, g, length)
    h = head.hrir(az, el, 400)
    ref = np.zeros((2, length))
    for i in range(len(az)):
        ref[:, k[i]:k[i] + 400] += g[i] * h[i][:, : length - k[i]]
    np.testing.assert_allclose(out, ref, atol=1e-9)


def test_render_fractional_delays_match_transfer():
    head = SphericalHead(perturb_db=1.0, seed=2)
    rng = np.random.default_rng(0)
    n = 200
    az, el = rng.uniform(-180, 180, n), rng.uniform(-60, 60, n)
    d, g = rng.uniform(0.005, 0.05, n), rng.standard_normal(n)
    length = 2048
    out = head.render(az, el, d, g, length)
    n_fft = 4096
    w = 2 * np.pi * np.fft.rfftfreq(n_fft, 1 / FS)
    spec = np.einsum("n,nef->ef", g, head.transfer(az, el, n_fft) * np.exp(-1j * w * d[:, None, None]))
    ref = np.fft.irfft(spec, n_fft, axis=-1)[:, :length]
    sos = signal.butter(8, 6000, fs=FS, output="sos")  # compare below the sinc's roll-off
    a, b = signal.sosfiltfilt(sos, out, axis=-1), signal.sosfiltfilt(sos, ref, axis=-1)
    assert np.linalg.norm(a - b) < 0.01 * np.linalg.norm(b)


def test_render_many_arrivals_is_fast():
    import time
    head = sample_listener(np.random.default_rng(3))
    rng = np.random.default_rng(1)
    n = 20000
    t0 = time.perf_counter()
    y = head.render(rng.uniform(-180, 180, n), rng.uniform(-90, 90, n), rng.uniform(0, 1, n),
                    rng.standard_normal(n), FS)
    assert time.perf_counter() - t0 < 2.0
    assert y.shape == (2, FS) and np.all(np.isfinite(y))


def test_render_nearest_interp_is_close():
    head = SphericalHead()
    rng = np.random.default_rng(2)
    n = 2000
    args = (rng.uniform(-180, 180, n), rng.uniform(-90, 90, n), rng.uniform(0.01, 0.2, n),
            rng.choice([-1.0, 1.0], n) * 0.01)
    exact, near = head.render(*args, 4000), head.render(*args, 4000, interp="nearest")
    # same energy (random placement), different fine timing
    np.testing.assert_allclose(np.sum(near**2), np.sum(exact**2), rtol=0.1)
    with pytest.raises(HRTFError):
        head.render(*args, 4000, interp="cubic")


def test_sample_listener_deterministic_and_varied():
    a = sample_listener(np.random.default_rng(7))
    b = sample_listener(np.random.default_rng(7))
    c = sample_listener(np.random.default_rng(8))
    assert a.name == b.name and a.name != c.name
    ha, hb, hc = (x.hrir([30.0], [0.0]) for x in (a, b, c))
    np.testing.assert_array_equal(ha, hb)
    assert np.max(np.abs(ha - hc)) > 1e-3
    assert 0.075 <= a.radius <= 0.100 and 95 <= a.ear_az_deg <= 105 and -5 <= a.ear_el_deg <= 5


def test_bad_inputs_raise():
    with pytest.raises(HRTFError):
        SphericalHead(radius=-1)
    with pytest.raises(HRTFError):
        SphericalHead().transfer([0, 1], [0, 1, 2], 256)
    with pytest.raises(HRTFError):
        SphericalHead().render([0.0], [0.0], [np.nan], [1.0], 100)
    with pytest.raises(HRTFError):
        load_hrtf("kemar.wav")
    assert isinstance(load_hrtf(None), SphericalHead) and isinstance(load_hrtf("sphere"), SphericalHead)


# ------------------------------------------------------------------------ SOFA
@pytest.fixture()
def sofa_file(tmp_path):
    pytest.importorskip("h5py")
    az, el = np.meshgrid(np.arange(-180, 180, 10.0), np.arange(-40, 61, 20.0))
    head = SphericalHead(perturb_db=1.0, seed=5)
    path = tmp_path / "sphere.sofa"
    write_sofa(path, head, az.ravel(), el.ravel(), n_taps=256)
    return path, head


def test_sofa_round_trip(sofa_file):
    path, head = sofa_file
    sofa = load_hrtf(str(path))
    assert isinstance(sofa, SofaHRTF) and sofa.ir.shape == (36 * 6, 2, 256)
    az, el = np.array([60.0, -30.0, 170.0, 0.0]), np.array([0.0, 20.0, -40.0, 60.0])
    n_fft = 512
    w = 2 * np.pi * np.fft.rfftfreq(n_fft)
    # SofaHRTF removes its estimated head-centre delay; the sphere's true one is bulk_delay.
    got = sofa.transfer(az, el, n_fft) * np.exp(1j * w * (head.bulk_delay - sofa.ref_delay))
    ref = head.transfer(az, el, n_fft)
    band = np.fft.rfftfreq(n_fft, 1 / FS) < 6500
    assert np.max(np.abs(got - ref)[..., band]) < 0.01
    assert abs(sofa.ref_delay - head.bulk_delay) < 1.5  # the estimate is close to the truth
    # azimuth convention preserved: +60 deg -> left louder
    h = sofa.hrir([60.0], [0.0])[0]
    assert np.sum(h[0] ** 2) > 2 * np.sum(h[1] ** 2)
    # nearest-direction lookup: 63 deg snaps to the 60 deg measurement
    np.testing.assert_allclose(sofa.transfer([63.0], [2.0], 256), sofa.transfer([60.0], [0.0], 256))


def test_sofa_render_matches_sphere(sofa_file):
    path, head = sofa_file
    sofa = SofaHRTF(path)
    az, el = np.array([60.0, -90.0, 120.0]), np.zeros(3)  # on the measurement grid
    d, g = np.array([0.01, 0.0203, 0.03]), np.array([1.0, -0.7, 0.4])
    length = 1024
    got, ref = sofa.render(az, el, d, g, length), head.render(az, el, d, g, length)
    # same response up to the sub-sample error of the estimated head-centre delay
    shift = (head.bulk_delay - sofa.ref_delay) / FS
    got_aligned = sofa.render(az, el, d - shift, g, length)  # sofa plays `shift` late
    sos = signal.butter(8, 6000, fs=FS, output="sos")
    a, b = signal.sosfiltfilt(sos, got_aligned, axis=-1), signal.sosfiltfilt(sos, ref, axis=-1)
    assert np.linalg.norm(a - b) < 0.02 * np.linalg.norm(b)
    assert got.shape == (2, length) and np.sum(got[0] ** 2) > np.sum(got[1] ** 2) * 0.5


def test_sofa_resampled_file(tmp_path):
    pytest.importorskip("h5py")
    head = SphericalHead()
    path = tmp_path / "s48.sofa"
    write_sofa(path, head, np.arange(-180, 180, 30.0), np.zeros(12), n_taps=256, fs=48000)
    sofa = SofaHRTF(path)
    assert sofa.ir.shape == (12, 2, 256)  # 768 taps at 48 kHz
    n_fft = 256
    w = 2 * np.pi * np.fft.rfftfreq(n_fft)
    got = sofa.transfer([90.0], [0.0], n_fft) * np.exp(1j * w * (head.bulk_delay - sofa.ref_delay))
    band = np.fft.rfftfreq(n_fft, 1 / FS) < 6000
    assert np.max(np.abs(got - head.transfer([90.0], [0.0], n_fft))[..., band]) < 0.05


def test_sofa_errors(tmp_path):
    h5py = pytest.importorskip("h5py")
    with pytest.raises(HRTFError, match="no such file"):
        SofaHRTF(tmp_path / "missing.sofa")
    garbage = tmp_path / "garbage.sofa"
    garbage.write_bytes(b"this is not an HDF5 file" * 10)
    with pytest.raises(HRTFError, match="garbage.sofa") as err:
        SofaHRTF(garbage)
    assert "\n" not in str(err.value)
    wrong = tmp_path / "wrong.sofa"
    write_sofa(wrong, SphericalHead(), [0.0, 90.0], [0.0, 0.0])
    with h5py.File(wrong, "a") as f:
        f.attrs["SOFAConventions"] = np.bytes_("GeneralFIR")
    with pytest.raises(HRTFError, match="GeneralFIR"):
        SofaHRTF(wrong)
    broken = tmp_path / "broken.sofa"
    write_sofa(broken, SphericalHead(), [0.0, 90.0], [0.0, 0.0])
    with h5py.File(broken, "a") as f:
        del f["Data.IR"]
    with pytest.raises(HRTFError, match="Data.IR"):
        SofaHRTF(broken)


@pytest.mark.parametrize("m", [40, 700])
def test_scatter_matches_naive_loop(m):
    """The vectorised scatter (sparse kernels, chunked, time-major; np.add.at for a few
    arrivals) equals a per-arrival loop, including kernels cut at both ends of the output."""
    from binlearn.hrtf import _SINC_OFFSETS, _SINC_PHASES, _SINC_TABLE, _scatter

    rng = np.random.default_rng(1)
    n_rows, length = 3, 300
    rows = rng.integers(0, n_rows, m)
    pos = rng.uniform(-40.0, length + 40.0, m)
    w = rng.standard_normal((2, m))
    ref = np.zeros((2, n_rows, length))
    ref_nearest = np.zeros((2, n_rows, length))
    for i in range(m):
        base = int(np.floor(pos[i]))
        ker = _SINC_TABLE[int(np.rint((pos[i] - base) * _SINC_PHASES))]
        for tap, off in zip(ker, _SINC_OFFSETS):
            if 0 <= base + off < length:
                ref[:, rows[i], base + off] += w[:, i] * tap
        near = int(np.rint(pos[i]))
        if 0 <= near < length:
            ref_nearest[:, rows[i], near] += w[:, i]
    np.testing.assert_allclose(_scatter(rows, pos, w, n_rows, length, chunk=128), ref, atol=1e-12)
    np.testing.assert_allclose(_scatter(rows, pos, w, n_rows, length, "nearest"), ref_nearest, atol=1e-12)
    assert not _scatter(rows[:0], pos[:0], w[:, :0], n_rows, length).any()


def test_diffuse_spectra_cached_per_listener():
    from binlearn.hrtf import diffuse_cholesky, diffuse_spectra, fibonacci_directions

    head = sample_listener(np.random.default_rng(5))
    c11, c22, c21 = diffuse_spectra(head, 64)
    assert diffuse_spectra(head, 64)[0] is c11  # computed once per listener
    az, el = fibonacci_directions(64, np.random.default_rng(64))
    H = np.fft.rfft(head.hrir(az, el), 1024, axis=-1)
    np.testing.assert_allclose(c21, np.mean(H[:, 1] * np.conj(H[:, 0]), axis=0), rtol=1e-12)
    # the factors reproduce the spectra: |l11|^2 = c11, l21 l11 = c21, |l21|^2 + l22^2 = c22
    l11, l21, l22 = diffuse_cholesky(head, 513, 64)
    np.testing.assert_allclose(l11**2, c11, rtol=1e-9)
    np.testing.assert_allclose(l21 * l11, c21, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(np.abs(l21) ** 2 + l22**2, c22, rtol=1e-9)
    assert np.all(np.abs(c21) <= np.sqrt(c11 * c22) * (1 + 1e-9))  # coherence <= 1
