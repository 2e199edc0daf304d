"""Tests for binlearn.signals: synthetic speech, speech files, noise fields, SNR mixing."""

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import coherence, welch

from binlearn import signals as S
from binlearn.hrtf import fibonacci_directions
from binlearn.signals import SignalError

FS = 16000


class FakeHRTF:
    """Free-field stand-in: pure interaural delay (ears 18 cm apart) plus a small ILD.

    Positive azimuth is to the left; hrir(az, el) -> (n, 2, n_taps) like binlearn.hrtf.
    """

    def __init__(self, spacing_m=0.18, c=343.0, base=64):
        self.tau = spacing_m / c
        self.base = base

    def hrir(self, az_deg, el_deg, n_taps=256):
        az = np.radians(np.atleast_1d(np.asarray(az_deg, dtype=float)))
        el = np.radians(np.atleast_1d(np.asarray(el_deg, dtype=float)))
        lateral = np.sin(az) * np.cos(el)  # +1 = fully left
        half = 0.5 * self.tau * FS * lateral  # samples
        delays = np.stack([self.base - half, self.base + half], axis=1)  # (n, 2): left leads when left
        gains = np.stack([1 + 0.3 * lateral, 1 - 0.3 * lateral], axis=1)
        t = np.arange(n_taps)
        win = np.hanning(n_taps)
        # windowed-sinc fractional delays
        h = np.sinc(t[None, None, :] - delays[:, :, None]) * win * gains[:, :, None]
        return h


def _active_fraction(x):
    return S.speech_active_mask(x).mean()


def _band_fraction(x, lo, hi):
    f, p = welch(x, FS, nperseg=1024)
    return p[(f >= lo) & (f < hi)].sum() / p.sum()


# ----------------------------------------------------------------------------- speech_like


def test_speech_like_deterministic_and_sized():
    a = S.speech_like(2.0, np.random.default_rng(7))
    b = S.speech_like(2.0, np.random.default_rng(7))
    c = S.speech_like(2.0, np.random.default_rng(8))
    assert a.shape == (32000,) and a.dtype == np.float64
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert S.speech_like(0.001, np.random.default_rng(0)).shape == (16,)
    with pytest.raises(SignalError, match="duration"):
        S.speech_like(0.0, np.random.default_rng(0))


@pytest.mark.parametrize("seed", range(4))
def test_speech_like_level_gaps_spectrum(seed):
    x = S.speech_like(8.0, np.random.default_rng(seed))
    assert np.isfinite(x).all()
    mask = S.speech_active_mask(x)
    active = np.repeat(mask, 320)[: x.size]
    assert np.sqrt(np.mean(x[active] ** 2)) == pytest.approx(0.1, rel=1e-6)
    # pauses between words: a real share of silent 20 ms frames, but mostly speech
    assert 0.10 <= 1 - mask.mean() <= 0.50
    # energy mostly below 4 kHz, but fricatives / aspiration reach 4-7 kHz
    assert _band_fraction(x, 0, 4000) > 0.9
    assert _band_fraction(x, 4000, 7000) > 0.003
    assert _band_fraction(x, 7500, 8000) < 0.01


@pytest.mark.parametrize("seed", range(3))
def test_speech_like_has_pitch(seed):
    """Loud (voiced) frames show a clear autocorrelation peak at a lag of 2.5-12 ms."""
    x = S.speech_like(5.0, np.random.default_rng(seed))
    L = 640  # 40 ms frames
    fr = x[: x.size // L * L].reshape(-1, L)
    e = np.mean(fr**2, axis=1)
    lo, hi = int(0.0025 * FS), int(0.012 * FS)
    peaks = []
    for w in fr[e > np.quantile(e, 0.6)]:
        w = w - w.mean()
        ac = np.correlate(w, w, "full")[L - 1 :]
        peaks.append(ac[lo : hi + 1].max() / ac[0])
    assert np.median(peaks) > 0.6


def test_speech_like_f0_range():
    """The pitch lag of the loudest frames matches a 90-250 Hz (+-20 %) voice."""
    for seed in range(3):
        x = S.speech_like(4.0, np.random.default_rng(seed))
        L = 640
        fr = x[: x.size // L * L].reshape(-1, L)
        w = fr[np.argmax(np.mean(fr**2, axis=1))]
        w = w - w.mean()
        ac = np.correlate(w, w, "full")[L - 1 :]
        lag = np.argmax(ac[40:193]) + 40
        assert 72 <= FS / lag <= 300


# ----------------------------------------------------------------------------- files


def _write_speechy(path, fs=FS, lead_s=0.5, body_s=1.0, tail_s=0.5, channels=1, seed=0):
    body = S.speech_like(body_s, np.random.default_rng(seed), fs) * 3
    # make the body's edges non-silent so trimming boundaries are predictable
    body += 0.05 * np.sin(2 * np.pi * 300 * np.arange(body.size) / fs)
    x = np.concatenate([np.zeros(int(lead_s * fs)), body, np.zeros(int(tail_s * fs))])
    data = np.stack([x] * channels, axis=1) if channels > 1 else x
    sf.write(path, data, fs, subtype="FLOAT")
    return body


def test_list_speech_files(tmp_path):
    (tmp_path / "b" / "deep").mkdir(parents=True)
    for name in ["a.wav", "b/c.FLAC", "b/deep/d.ogg", "z.Wav"]:
        sf.write(tmp_path / name, np.zeros(10), FS, format={"wav": "WAV", "flac": "FLAC", "ogg": "OGG"}[name.rsplit(".", 1)[1].lower()])
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "dir.wav").mkdir()  # a folder named like audio is not a file
    files = S.list_speech_files(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in files] == ["a.wav", "b/c.FLAC", "b/deep/d.ogg", "z.Wav"]
    assert files == sorted(files)


def test_list_speech_files_errors(tmp_path):
    with pytest.raises(SignalError, match="speech folder not found: .*missing"):
        S.list_speech_files(tmp_path / "missing")
    f = tmp_path / "file.wav"
    sf.write(f, np.zeros(10), FS)
    with pytest.raises(SignalError, match="speech folder not found"):
        S.list_speech_files(f)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.md").write_text("x")
    with pytest.raises(SignalError, match=r"no \.wav/\.flac/\.ogg files under .*empty"):
        S.list_speech_files(empty)


def test_load_speech_trims_and_pads(tmp_path):
    p = tmp_path / "utt.wav"
    body = _write_speechy(p, channels=2)
    x = S.load_speech(p, 3.0, np.random.default_rng(0))
    assert x.shape == (48000,)
    # leading silence trimmed: speech starts within the first 20 ms frame
    assert np.abs(x[:320]).max() > 0
    # shorter than requested: zero padding at the end only
    n_body = body.size
    assert np.all(x[n_body + 320 :] == 0)
    active = np.repeat(S.speech_active_mask(x), 320)[: x.size]
    assert np.sqrt(np.mean(x[active] ** 2)) == pytest.approx(0.1, rel=1e-6)


def test_load_speech_random_crop_and_resample(tmp_path):
    p = tmp_path / "utt44.wav"
    _write_speechy(p, fs=44100, body_s=2.0)
    a = S.load_speech(p, 0.5, np.random.default_rng(1))
    b = S.load_speech(p, 0.5, np.random.default_rng(1))
    c = S.load_speech(p, 0.5, np.random.default_rng(2))
    assert a.shape == (8000,)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_load_speech_silent_file(tmp_path):
    p = tmp_path / "quiet.wav"
    sf.write(p, np.zeros(1600), FS)
    with pytest.raises(SignalError, match="quiet.wav: file is silent"):
        S.load_speech(p, 1.0, np.random.default_rng(0))


def test_speech_active_mask():
    x = np.concatenate([np.zeros(640), np.ones(640), 1e-3 * np.ones(650)])
    m = S.speech_active_mask(x)
    assert m.tolist() == [False, False, True, True, False, False, False]
    assert not S.speech_active_mask(np.zeros(100)).any()
    assert S.speech_active_mask(np.stack([x, x])).tolist() == m.tolist()


# ----------------------------------------------------------------------------- noise


def _octave_slope_db(x):
    f, p = welch(x, FS, nperseg=4096)
    sel = (f >= 100) & (f <= 6000)
    return np.polyfit(np.log2(f[sel]), 10 * np.log10(p[sel]), 1)[0]


def test_noise_kinds_spectra():
    rng = np.random.default_rng(3)
    n = 4 * FS
    w = S.noise("white", n, rng)
    p = S.noise("pink", n, rng)
    for x in (w, p):
        assert x.shape == (n,) and np.sqrt(np.mean(x**2)) == pytest.approx(1.0)
    assert abs(_octave_slope_db(w)) < 0.5
    assert _octave_slope_db(p) == pytest.approx(-3.0, abs=1.5)


def test_babble():
    n = 2 * FS
    b = S.noise("babble", n, np.random.default_rng(4))
    assert b.shape == (n,) and np.sqrt(np.mean(b**2)) == pytest.approx(1.0)
    np.testing.assert_array_equal(b, S.noise("babble", n, np.random.default_rng(4)))
    # many overlapping talkers: (almost) no pauses, unlike one talker
    assert _active_fraction(b) > 0.95
    assert _band_fraction(b, 0, 4000) > 0.9


def test_babble_from_files(tmp_path):
    for i in range(2):
        _write_speechy(tmp_path / f"s{i}.wav", seed=i)
    files = S.list_speech_files(tmp_path)
    b = S.noise("babble", FS, np.random.default_rng(0), speech_sources=files)
    assert b.shape == (FS,) and np.sqrt(np.mean(b**2)) == pytest.approx(1.0)
    with pytest.raises(SignalError, match="empty speech_sources"):
        S.noise("babble", FS, np.random.default_rng(0), speech_sources=[])


def test_unknown_noise_kind():
    with pytest.raises(SignalError, match=r"unknown noise kind 'brown' \(choose white, pink, babble\)"):
        S.noise("brown", 100, np.random.default_rng(0))
    with pytest.raises(SignalError, match="unknown noise kind"):
        S.diffuse_noise(FakeHRTF(), "brown", 100, np.random.default_rng(0))
    with pytest.raises(SignalError, match="unknown noise kind"):
        S.point_interferer(FakeHRTF(), "brown", 100, 0.0, np.random.default_rng(0))


def _mean_coherence(x, lo, hi):
    f, c = coherence(x[0], x[1], FS, nperseg=512)
    return c[(f >= lo) & (f <= hi)].mean()


def test_diffuse_vs_point_coherence():
    hrtf = FakeHRTF()
    n = 3 * FS
    d = S.diffuse_noise(hrtf, "white", n, np.random.default_rng(5))
    p = S.point_interferer(hrtf, "white", n, 40.0, np.random.default_rng(5))
    for x in (d, p):
        assert x.shape == (2, n)
        assert S.binaural_rms(x) == pytest.approx(1.0)
    assert _mean_coherence(d, 2000, 7000) < 0.2
    assert _mean_coherence(p, 2000, 7000) > 0.95
    # the point source is to the left: louder left ear (fake ILD)
    assert np.mean(p[0] ** 2) > np.mean(p[1] ** 2)


def test_diffuse_noise_options():
    hrtf = FakeHRTF()
    a = S.diffuse_noise(hrtf, "pink", FS, np.random.default_rng(6), n_dirs=8)
    np.testing.assert_array_equal(a, S.diffuse_noise(hrtf, "pink", FS, np.random.default_rng(6), n_dirs=8))
    b = S.diffuse_noise(hrtf, "babble", FS // 2, np.random.default_rng(6), n_dirs=6)
    assert b.shape == (2, FS // 2) and S.binaural_rms(b) == pytest.approx(1.0)
    with pytest.raises(SignalError, match="n_dirs"):
        S.diffuse_noise(hrtf, "white", FS, np.random.default_rng(0), n_dirs=0)


def test_fibonacci_directions_uniform():
    az, el = fibonacci_directions(2000, np.random.default_rng(0))
    z = np.sin(np.radians(el))
    # uniform on the sphere <=> z uniform in [-1, 1]
    assert abs(z.mean()) < 0.02 and np.var(z) == pytest.approx(1 / 3, abs=0.02)
    assert np.all((az >= -180) & (az <= 180))


# ----------------------------------------------------------------------------- mixing


def _snr_db(speech, mix):
    n = mix - speech
    return 10 * np.log10(np.sum(speech**2) / np.sum(n**2))


@pytest.mark.parametrize("snr", [-10.0, 0.0, 7.5, 30.0])
def test_mix_at_snr(snr):
    rng = np.random.default_rng(9)
    s = rng.standard_normal((2, 8000)) * np.array([[1.0], [0.3]])  # unequal ears
    n = rng.standard_normal((2, 8000)) * 5
    m = S.mix_at_snr(s, n, snr)
    assert m.shape == s.shape
    assert abs(_snr_db(s, m) - snr) < 0.01


def test_mix_at_snr_inf_and_errors():
    rng = np.random.default_rng(10)
    s, n = rng.standard_normal((2, 100)), rng.standard_normal((2, 100))
    np.testing.assert_array_equal(S.mix_at_snr(s, n, np.inf), s)
    with pytest.raises(SignalError, match="shapes differ"):
        S.mix_at_snr(s, n[:, :50], 0.0)
    with pytest.raises(SignalError, match="noise is silent"):
        S.mix_at_snr(s, np.zeros_like(n), 0.0)
    with pytest.raises(SignalError, match="SNR"):
        S.mix_at_snr(s, n, np.nan)


def test_mix_at_snr_torch():
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(0)
    s = torch.randn(4, 2, 4000, generator=g) * torch.tensor([1.0, 0.2, 3.0, 0.5]).view(4, 1, 1)
    n = torch.randn(4, 2, 4000, generator=g) * 2
    snr = torch.tensor([-5.0, 0.0, 12.0, float("inf")])
    m = S.mix_at_snr_torch(s, n, snr)
    assert m.shape == s.shape and m.dtype == s.dtype
    sd, md = s.double().numpy(), m.double().numpy()
    for b in range(3):
        assert abs(_snr_db(sd[b], md[b]) - snr[b].item()) < 0.01
        # same result as the numpy version
        np.testing.assert_allclose(md[b], S.mix_at_snr(sd[b], n[b].double().numpy(), snr[b].item()), rtol=1e-5, atol=1e-5)
    assert torch.equal(m[3], s[3])
    # scalar SNR broadcasts; silent noise gives no NaN
    m2 = S.mix_at_snr_torch(s, torch.zeros_like(n), 0.0)
    assert torch.isfinite(m2).all() and torch.equal(m2, s)


def test_binaural_rms():
    assert S.binaural_rms(np.array([[3.0, 3.0], [0.0, 0.0]])) == pytest.approx(np.sqrt(4.5))
    with pytest.raises(SignalError):
        S.binaural_rms(np.zeros((2, 0)))
