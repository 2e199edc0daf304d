"""`binlearn doa`: bundled model, JSON contract, long files, and every kind of bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import fftconvolve
from typer.testing import CliRunner

from binlearn.cli import app
from binlearn.hrtf import SphericalHead
from binlearn.infer import Localiser, default_model_path
from binlearn.room import direct_rir
from binlearn.signals import speech_like

runner = CliRunner()


def talker(az: float, seconds: float = 2.0, seed: int = 0, head=None) -> np.ndarray:
    """(time, 2) clean anechoic speech-like talker at ``az`` through a spherical head (not a training head)."""
    head = head or SphericalHead(radius=0.09, ear_az_deg=98.0, perturb_db=1.0, seed=1234)
    s = speech_like(seconds, np.random.default_rng(seed))
    room, pos = np.array([20.0, 20.0, 5.0]), np.array([10.0, 10.0, 1.6])
    src = pos + 1.5 * np.array([np.cos(np.radians(az)), np.sin(np.radians(az)), 0.0])
    h = direct_rir(room, src, pos, 0.0, head)
    x = np.stack([fftconvolve(s, h[c])[: s.size] for c in range(2)], axis=1)
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("doa")
    files = {}
    for az in (-30.0, 30.0):
        files[az] = d / f"talker_{az:+.0f}.wav"
        sf.write(files[az], talker(az), 16000, subtype="FLOAT")
    return d, files


def test_bundled_model_ships_and_localises_plus_minus_30(clips):
    assert default_model_path().is_file(), "binlearn/models/default.pt must ship with the package"
    _, files = clips
    res = runner.invoke(app, ["doa", *(str(f) for f in files.values()), "--json"])
    assert res.exit_code == 0, res.output
    out = [json.loads(line) for line in res.stdout.strip().splitlines()]
    assert [o["file"] for o in out] == [str(f) for f in files.values()]
    for o, az in zip(out, files):
        assert abs(o["azimuth"] - az) <= 10.0, (o, az)
        assert 0.0 <= o["confidence"] <= 1.0


def test_json_contract_with_frames_and_human_table(clips, tmp_path):
    _, files = clips
    f = str(files[30.0])
    res = runner.invoke(app, ["doa", f, "--json", "--frames"])
    assert res.exit_code == 0
    o = json.loads(res.stdout)
    assert set(o) >= {"file", "azimuth", "confidence", "frames"}
    assert isinstance(o["azimuth"], float) and len(o["frames"]) == 2 * 16000 // 160 + 1
    active = [a for a in o["frames"] if a is not None]
    assert len(active) > 50 and all(-90 <= a <= 90 for a in active)
    res = runner.invoke(app, ["doa", f])
    assert res.exit_code == 0 and "azimuth" in res.stdout and "left" in res.stdout
    res = runner.invoke(app, ["doa", f, "--plot", str(tmp_path / "track.png")])
    assert res.exit_code == 0 and (tmp_path / "track.png").stat().st_size > 1000


def test_any_sample_rate_and_format(clips, tmp_path):
    from scipy.signal import resample_poly

    x = talker(-30.0)
    ref = Localiser()(_write(tmp_path / "a.wav", x, 16000)).azimuth
    y = resample_poly(x, 441, 160, axis=0).astype(np.float32)
    for name in ("b.flac", "c.ogg"):
        r = Localiser()(_write(tmp_path / name, y, 44100))
        assert abs(r.azimuth - ref) < 3.0, (name, r.azimuth, ref)


def _write(path, x, fs, subtype=None):
    sf.write(path, x, fs, subtype=subtype)
    return path


def test_long_file_streams_in_blocks(tmp_path, monkeypatch):
    """A 75 s file (three blocks) is read block-wise, never whole, and gives a steady answer."""
    import binlearn.audio as audio

    x = np.concatenate([talker(30.0, 5.0, seed=i) for i in range(15)])
    path = _write(tmp_path / "long.wav", x, 16000, "FLOAT")
    monkeypatch.setattr(audio, "read_audio", lambda *a, **k: pytest.fail("whole-file read"))
    r = Localiser()(path)
    assert len(r.frames) == x.shape[0] // 160 + 1
    assert abs(r.azimuth - 30.0) <= 10.0
    track = np.array([np.nan if a is None else a for a in r.frames])
    # Frames around the block boundaries (28 s, 56 s) agree with the rest.
    for t in (28.0, 56.0):
        seg = track[int(t * 100) - 100:int(t * 100) + 100]
        assert np.nanmedian(np.abs(seg - 30.0)) < 15.0


def test_bad_inputs_each_get_one_line_and_others_still_run(clips, tmp_path):
    _, files = clips
    good = str(files[30.0])
    mono = _write(tmp_path / "mono.wav", talker(0.0)[:, 0], 16000)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    truncated = tmp_path / "truncated.wav"
    sf.write(truncated, talker(10.0), 16000, subtype="PCM_16")
    truncated.write_bytes(truncated.read_bytes()[:30000])
    nan = talker(10.0)
    nan[5000, 1] = np.nan
    nanf = _write(tmp_path / "nan.wav", nan, 16000, "FLOAT")
    short = _write(tmp_path / "short.wav", talker(10.0)[:300], 16000, "FLOAT")
    missing = tmp_path / "missing.wav"
    bad = {str(mono): "expected 2 channels", str(corrupt): "corrupt.wav", str(truncated): "truncated",
           str(nanf): "NaN", str(short): "too short", str(missing): "not found"}
    res = runner.invoke(app, ["doa", good, *bad, "--json"])
    assert res.exit_code == 1
    assert "Traceback" not in res.output
    lines = [json.loads(line) for line in res.stdout.strip().splitlines()]
    assert [o["file"] for o in lines] == [good, *bad]
    assert lines[0]["azimuth"] is not None and "error" not in lines[0]
    err_lines = res.stderr.strip().splitlines()
    assert len(err_lines) == len(bad)
    for (f, msg), line, o in zip(bad.items(), err_lines, lines[1:]):
        assert msg in line, (f, line)
        assert o["azimuth"] is None and o["confidence"] == 0.0 and msg in o["error"]


def test_silence_is_no_talker_not_a_failure(tmp_path):
    silent = _write(tmp_path / "silent.wav", np.zeros((32000, 2), np.float32), 16000, "FLOAT")
    hiss = _write(tmp_path / "hiss.wav", (1e-5 * np.random.default_rng(0).standard_normal((32000, 2))).astype(np.float32),
                  16000, "FLOAT")
    res = runner.invoke(app, ["doa", str(silent), str(hiss), "--json"])
    assert res.exit_code == 0, res.output
    for line in res.stdout.strip().splitlines():
        o = json.loads(line)
        assert o["azimuth"] is None and o["confidence"] == 0.0 and o["talker"] is False
    assert "no talker" in res.stderr
    res = runner.invoke(app, ["doa", str(silent)])
    assert "no talker" in res.stdout


def test_bad_model_file(tmp_path, clips):
    _, files = clips
    res = runner.invoke(app, ["doa", str(files[30.0]), "--model", str(tmp_path / "nope.pt")])
    assert res.exit_code == 1 and res.stderr.strip() == f"error: checkpoint not found: {tmp_path / 'nope.pt'}"
