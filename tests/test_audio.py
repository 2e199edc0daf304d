"""Tests for binlearn.audio: reading/resampling, streaming, atomic writes, error messages."""

import hashlib
import os

import numpy as np
import pytest
import soundfile as sf

from binlearn import audio
from binlearn.audio import AudioError


def _sine(freq, sr, dur, amp=0.5, phase=0.0):
    t = np.arange(int(round(dur * sr))) / sr
    return amp * np.sin(2 * np.pi * freq * t + phase)


def _stereo(sr, dur):
    """Left 440 Hz at 0.5, right 1000 Hz at 0.25: (time, 2) as soundfile wants."""
    return np.stack([_sine(440, sr, dur, 0.5), _sine(1000, sr, dur, 0.25)], axis=1)


def _peak_freq_amp(x, fs):
    """Dominant frequency (Hz, parabolic interpolation) and amplitude of a sine, from the middle."""
    x = x[len(x) // 4 : 3 * len(x) // 4]
    w = np.hanning(len(x))
    spec = np.abs(np.fft.rfft(x * w))
    k = int(np.argmax(spec))
    a, b, c = np.log(spec[k - 1 : k + 2])
    delta = 0.5 * (a - c) / (a - 2 * b + c)
    freq = (k + delta) * fs / len(x)
    amp = np.sqrt(2 * np.mean(x**2))
    return freq, amp


def _assert_one_line(err):
    msg = str(err.value)
    assert "\n" not in msg and msg


# ----------------------------------------------------------------------------- read_audio


@pytest.mark.parametrize("sr", [44100, 48000, 8000, 22050, 16000])
def test_resampling_preserves_sine(tmp_path, sr):
    p = tmp_path / f"s{sr}.wav"
    sf.write(p, _stereo(sr, 1.0), sr, subtype="FLOAT")
    x = audio.read_audio(p)
    assert x.dtype == np.float32 and x.shape == (2, 16000)
    f0, a0 = _peak_freq_amp(x[0], 16000)
    f1, a1 = _peak_freq_amp(x[1], 16000)
    # channel order kept: left is 440 Hz, right 1000 Hz
    assert abs(f0 - 440) < 1.0 and abs(f1 - 1000) < 1.0
    assert abs(a0 - 0.5) < 0.005 and abs(a1 - 0.25) < 0.005


@pytest.mark.parametrize("ext,subtype,tol", [("flac", "PCM_24", 1e-6), ("ogg", "VORBIS", 0.05)])
def test_flac_ogg_round_trip(tmp_path, ext, subtype, tol):
    y = _stereo(16000, 1.0).T.astype(np.float32)
    p = tmp_path / f"x.{ext}"
    audio.write_wav(p, y, subtype=subtype)
    x = audio.read_audio(p, mono_ok=False)
    assert x.shape == y.shape
    # lossy vorbis: compare the body (codec edge effects) loosely, flac exactly
    sl = slice(1000, -1000)
    assert np.max(np.abs(x[:, sl] - y[:, sl])) < tol
    assert audio.audio_info(p) == (16000, 2, 16000)


def test_mono_ok(tmp_path):
    p = tmp_path / "mono.wav"
    sf.write(p, _sine(440, 16000, 0.2), 16000)
    assert audio.read_audio(p).shape == (1, 3200)
    with pytest.raises(AudioError, match=r"mono.wav: expected 2 channels \(left, right\), got 1") as e:
        audio.read_audio(p, mono_ok=False)
    _assert_one_line(e)


def test_more_than_two_channels(tmp_path):
    p = tmp_path / "quad.wav"
    sf.write(p, np.zeros((100, 4)), 16000)
    for mono_ok in (True, False):
        with pytest.raises(AudioError, match="got 4"):
            audio.read_audio(p, mono_ok=mono_ok)


def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match="nothere.wav: file not found") as e:
        audio.read_audio(tmp_path / "nothere.wav")
    _assert_one_line(e)
    with pytest.raises(AudioError, match="file not found"):
        audio.audio_info(tmp_path / "nothere.wav")


def test_truncated_wav(tmp_path):
    p = tmp_path / "full.wav"
    sf.write(p, _stereo(16000, 0.5), 16000, subtype="PCM_16")
    b = p.read_bytes()
    q = tmp_path / "chopped.wav"
    q.write_bytes(b[: len(b) // 2])
    with pytest.raises(AudioError, match="chopped.wav: file is truncated") as e:
        audio.read_audio(q)
    _assert_one_line(e)
    with pytest.raises(AudioError, match="truncated"):
        audio.audio_info(q)
    r = tmp_path / "header_only.wav"
    r.write_bytes(b[:30])
    with pytest.raises(AudioError, match="header_only.wav") as e:
        audio.read_audio(r)
    _assert_one_line(e)


def test_truncated_flac(tmp_path):
    p = tmp_path / "full.flac"
    sf.write(p, np.random.default_rng(0).uniform(-0.5, 0.5, (16000, 2)), 16000)
    b = p.read_bytes()
    q = tmp_path / "chopped.flac"
    q.write_bytes(b[: len(b) // 2])
    with pytest.raises(AudioError, match="chopped.flac") as e:
        audio.read_audio(q)
    _assert_one_line(e)


def test_garbage_and_empty(tmp_path):
    g = tmp_path / "garbage.wav"
    g.write_bytes(b"definitely not audio " * 20)
    with pytest.raises(AudioError, match="garbage.wav: cannot read") as e:
        audio.read_audio(g)
    _assert_one_line(e)
    z = tmp_path / "zero_bytes.wav"
    z.write_bytes(b"")
    with pytest.raises(AudioError, match="zero_bytes.wav: file is empty"):
        audio.read_audio(z)
    n = tmp_path / "no_frames.wav"
    sf.write(n, np.zeros((0, 2)), 16000)
    with pytest.raises(AudioError, match="no_frames.wav: file contains no audio"):
        audio.read_audio(n)
    with pytest.raises(AudioError, match="no audio"):
        audio.audio_info(n)


def test_nan_samples(tmp_path):
    y = _stereo(16000, 0.1)
    y[100, 1] = np.nan
    p = tmp_path / "nan.wav"
    sf.write(p, y, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="nan.wav: contains NaN") as e:
        audio.read_audio(p)
    _assert_one_line(e)
    y[100, 1] = np.inf
    sf.write(p, y, 16000, subtype="DOUBLE")
    with pytest.raises(AudioError, match="NaN or infinite"):
        audio.read_audio(p)
    with pytest.raises(AudioError, match="NaN or infinite"):
        list(audio.iter_audio_blocks(p, 0.05, 0.0))


def test_audio_info(tmp_path):
    p = tmp_path / "a.wav"
    sf.write(p, _stereo(44100, 0.5), 44100)
    assert audio.audio_info(p) == (44100, 2, 22050)


# ----------------------------------------------------------------------------- iter_audio_blocks


def _join(blocks, overlap):
    return np.concatenate([blocks[0]] + [b[:, overlap:] for b in blocks[1:]], axis=1)


@pytest.mark.parametrize("sr", [16000, 44100, 48000, 8000])
def test_blocks_concatenate_to_read_audio(tmp_path, sr):
    rng = np.random.default_rng(1)
    y = rng.uniform(-0.5, 0.5, (int(2.3 * sr), 2))
    p = tmp_path / f"long{sr}.wav"
    sf.write(p, y, sr, subtype="FLOAT")
    full = audio.read_audio(p)
    for block_s, overlap_s in [(0.5, 0.1), (0.37, 0.0), (5.0, 1.0)]:
        blocks = list(audio.iter_audio_blocks(p, block_s, overlap_s))
        n, m = round(block_s * 16000), round(overlap_s * 16000)
        assert all(b.shape == (2, n) and b.dtype == np.float32 for b in blocks[:-1])
        assert 0 < blocks[-1].shape[1] <= n
        joined = _join(blocks, m)
        assert joined.shape == full.shape
        # segments are read with filter context and grid-aligned: equal up to float rounding
        np.testing.assert_allclose(joined, full, atol=1e-5)


def test_blocks_need_stereo_and_valid_sizes(tmp_path):
    p = tmp_path / "mono.wav"
    sf.write(p, np.zeros(1000), 16000)
    with pytest.raises(AudioError, match="expected 2 channels"):
        audio.iter_audio_blocks(p, 0.1, 0.0)
    q = tmp_path / "st.wav"
    sf.write(q, np.zeros((1000, 2)), 16000)
    with pytest.raises(AudioError, match="overlap"):
        audio.iter_audio_blocks(q, 0.1, 0.1)
    with pytest.raises(AudioError, match="block length"):
        audio.iter_audio_blocks(q, 0.0, 0.0)


# ----------------------------------------------------------------------------- writing


def _md5(p):
    return hashlib.md5(p.read_bytes()).hexdigest()


@pytest.mark.parametrize("subtype", ["FLOAT", "PCM_16", "PCM_24"])
def test_write_wav_deterministic_and_no_temp(tmp_path, subtype):
    x = np.random.default_rng(2).uniform(-0.9, 0.9, (2, 4000)).astype(np.float32)
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    audio.write_wav(a, x, subtype=subtype)
    audio.write_wav(b, x, subtype=subtype)
    assert a.read_bytes() == b.read_bytes()
    assert sorted(os.listdir(tmp_path)) == ["a.wav", "b.wav"]
    y = audio.read_audio(a)
    tol = {"FLOAT": 0, "PCM_16": 1 / 32768, "PCM_24": 1e-6}[subtype]
    np.testing.assert_allclose(y, x, atol=tol)


def test_write_wav_float_bytes_stable_across_seconds(tmp_path):
    """libsndfile stamps float WAVs with the wall clock (seconds): write across a second boundary."""
    import time as _time

    x = np.linspace(-0.5, 0.5, 2000).reshape(2, 1000)
    a = tmp_path / "a.wav"
    audio.write_wav(a, x)
    h1 = _md5(a)
    _time.sleep(1.05)
    audio.write_wav(a, x)
    assert _md5(a) == h1


def test_write_wav_failure_keeps_old_file(tmp_path, monkeypatch):
    p = tmp_path / "out.wav"
    audio.write_wav(p, np.zeros((2, 100)))
    before = p.read_bytes()

    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(sf, "write", boom)
    with pytest.raises(RuntimeError, match="disk on fire"):
        audio.write_wav(p, np.ones((2, 100)) * 0.5)
    assert p.read_bytes() == before
    assert os.listdir(tmp_path) == ["out.wav"]


def test_write_wav_bad_input(tmp_path):
    with pytest.raises(AudioError, match="NaN"):
        audio.write_wav(tmp_path / "x.wav", np.full((2, 10), np.nan))
    with pytest.raises(AudioError, match=r"\(time, channels\)"):
        audio.write_wav(tmp_path / "x.wav", np.zeros((1000, 2)))
    with pytest.raises(AudioError, match="unsupported output extension"):
        audio.write_wav(tmp_path / "x.mp4", np.zeros((2, 10)))
    with pytest.raises(AudioError, match="output folder does not exist"):
        audio.write_wav(tmp_path / "nope" / "x.wav", np.zeros((2, 10)))
    assert os.listdir(tmp_path) == []


def test_write_wav_permissions_like_normal_file(tmp_path):
    p = tmp_path / "perm.wav"
    audio.write_wav(p, np.zeros((2, 10)))
    ref = tmp_path / "ref.txt"
    ref.write_text("x")
    assert (p.stat().st_mode & 0o777) == (ref.stat().st_mode & 0o777)


def test_atomic_write_text(tmp_path, monkeypatch):
    p = tmp_path / "r.csv"
    audio.atomic_write_text(p, "a,b\n1,2\n")
    assert p.read_text() == "a,b\n1,2\n"
    audio.atomic_write_text(p, "ünï\r\n")
    assert p.read_bytes() == "ünï\r\n".encode()
    assert os.listdir(tmp_path) == ["r.csv"]

    def boom(*a, **k):
        raise OSError("no rename")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        audio.atomic_write_text(p, "new")
    assert p.read_bytes() == "ünï\r\n".encode()
    assert os.listdir(tmp_path) == ["r.csv"]
