"""Dataset simulation: determinism across workers, metadata contract, resume and bad parameters."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from binlearn.audio import read_audio
from binlearn.cli import app
from binlearn.simulate import METADATA_COLUMNS, SimConfig, SimulationError, simulate

runner = CliRunner()


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def small_cfg(**kw) -> SimConfig:
    base = dict(clips=6, seed=11, duration_s=0.5, listeners_per_split=(2, 2, 2), rt60_range=(0.0, 0.6),
                save_rirs=True)
    base.update(kw)
    return SimConfig(**base)


def test_same_seed_byte_identical_for_any_worker_count(tmp_path):
    simulate(tmp_path / "w1", small_cfg(), workers=1)
    simulate(tmp_path / "w2", small_cfg(), workers=2)
    d1, d2 = _digest(tmp_path / "w1"), _digest(tmp_path / "w2")
    assert d1 == d2
    assert len(d1) == 2 + 6 * 5  # config + metadata + per clip (clean, reverb, noise, rir, json)
    simulate(tmp_path / "s2", small_cfg(seed=12), workers=1)
    assert _digest(tmp_path / "s2")["metadata.csv"] != d1["metadata.csv"]


def test_metadata_contract_and_audio(tiny_dataset):
    rows = list(csv.DictReader(open(tiny_dataset / "metadata.csv")))
    assert list(rows[0].keys()) == METADATA_COLUMNS
    assert len(rows) == 24
    assert {r["split"] for r in rows} == {"train", "val", "test"}
    for r in rows:
        assert -90 <= float(r["azimuth_deg"]) <= 90
        for k in ("clean_path", "reverb_path", "noise_path"):
            x = read_audio(tiny_dataset / r[k], mono_ok=False)
            assert x.shape == (2, 16000)
            assert np.isfinite(x).all() and np.abs(x).max() > 0
    # Splits never share a listener.
    heads = {s: {r["listener_id"] for r in rows if r["split"] == s} for s in ("train", "val", "test")}
    assert not (heads["train"] & heads["val"]) and not (heads["train"] & heads["test"]) and not (heads["val"] & heads["test"])


def test_clean_teacher_interaural_delay_sign(tiny_dataset):
    """The clean (direct-path) teacher leads in the ear nearer the talker: GCC-PHAT lag sign = azimuth sign."""
    import torch

    from binlearn.features import FeatureConfig, gcc_phat, peak_lag

    cfg = FeatureConfig()
    rows = list(csv.DictReader(open(tiny_dataset / "metadata.csv")))
    checked = 0
    for r in rows:
        az = float(r["azimuth_deg"])
        if abs(az) < 15:
            continue
        clean = torch.from_numpy(read_audio(tiny_dataset / r["clean_path"], mono_ok=False))[None]
        g = gcc_phat(clean, cfg).mean(1)                       # (1, lags), averaged over frames
        lag = float(peak_lag(g, cfg)[0])
        assert np.sign(lag) == np.sign(az), (az, lag)
        checked += 1
    assert checked >= 8


def test_resume_completes_interrupted_run(tmp_path):
    ref = tmp_path / "ref"
    simulate(ref, small_cfg(), workers=1)
    part = tmp_path / "part"
    simulate(part, small_cfg(), workers=1)
    # Simulate an interruption: two clips and the metadata never got written.
    (part / "metadata.csv").unlink()
    for i in (2, 4):
        (part / f"clips/{i:06d}.json").unlink()
        (part / f"clips/{i:06d}_noise.wav").unlink()
    # Clip files are not fsynced: after a power cut a finished clip may hold an empty or cut file.
    (part / "clips/000001_reverb.wav").write_bytes(b"")
    clean = part / "clips/000003_clean.wav"
    clean.write_bytes(clean.read_bytes()[:1000])
    with pytest.raises(SimulationError, match="not empty"):
        simulate(part, small_cfg(), workers=1)
    with pytest.raises(SimulationError, match="different configuration"):
        simulate(part, small_cfg(seed=99), resume=True)
    simulate(part, small_cfg(), workers=2, resume=True)
    assert _digest(part) == _digest(ref)


@pytest.mark.parametrize("args, message", [
    (["--rt60", "-0.5,0.5"], "RT60 must be non-negative"),
    (["--rt60", "0.02,0.05"], "not physical"),
    (["--rt60", "0.8,0.3"], "reversed"),
    (["--distance", "5,9"], "room too small for the talker distance"),
    (["--speech-dir", "/nonexistent/speech"], "speech folder not found"),
    (["--noise", "pink,brown"], "unknown noise kind"),
    (["--azimuth", "-120,120"], "full-circle"),
    (["--splits", "0.5,0.5"], "--splits"),
    (["--clips", "0"], "--clips"),
])
def test_bad_parameters_one_line_error_before_work(tmp_path, args, message):
    out = tmp_path / "out"
    res = runner.invoke(app, ["simulate", str(out), "--clips", "4", "-q", *args])
    assert res.exit_code == 1, res.output
    err = res.stderr.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err and "Traceback" not in res.output
    assert not out.exists()  # nothing was written


def test_empty_speech_folder_and_bad_sofa(tmp_path):
    empty = tmp_path / "speech"
    empty.mkdir()
    (empty / "notes.txt").write_text("no audio here")
    res = runner.invoke(app, ["simulate", str(tmp_path / "o1"), "--speech-dir", str(empty), "-q"])
    assert res.exit_code == 1 and "no .wav/.flac/.ogg" in res.stderr
    bad = tmp_path / "head.sofa"
    bad.write_bytes(b"this is not hdf5")
    res = runner.invoke(app, ["simulate", str(tmp_path / "o2"), "--hrtf", str(bad), "-q"])
    assert res.exit_code == 1 and "head.sofa" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_existing_output_needs_overwrite_and_keeps_data(tmp_path):
    out = tmp_path / "data"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    res = runner.invoke(app, ["simulate", str(out), "--clips", "2", "-q"])
    assert res.exit_code == 1 and "--overwrite" in res.stderr
    res = runner.invoke(app, ["simulate", str(out), "--clips", "2", "-q", "--overwrite"])
    assert res.exit_code == 1 and "refusing" in res.stderr
    assert (out / "precious.txt").read_text() == "keep me"


def test_speech_dir_splits_by_speaker(tmp_path):
    import soundfile as sf

    rng = np.random.default_rng(0)
    root = tmp_path / "libri"
    for spk in range(6):
        d = root / f"{spk:03d}" / "chapter"
        d.mkdir(parents=True)
        for u in range(2):
            sf.write(d / f"{spk}-{u}.flac", 0.1 * rng.standard_normal(22050), 22050)
    out = tmp_path / "data"
    res = runner.invoke(app, ["simulate", str(out), "--clips", "10", "--duration", "0.5", "-q", "--speech-dir", str(root)])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(open(out / "metadata.csv")))
    spk = {s: {Path(r["speech_source"]).parts[-3] for r in rows if r["split"] == s} for s in ("train", "val", "test")}
    assert not (spk["train"] & spk["test"]) and not (spk["train"] & spk["val"])
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["speech_dir"] == str(root)


def test_simulate_with_sofa_heads(tmp_path):
    """Measured-HRTF path: three synthetic SOFA files are dealt to the splits so heads stay disjoint."""
    pytest.importorskip("h5py")
    from binlearn.hrtf import SphericalHead, write_sofa

    grid_az = np.arange(-180.0, 180.0, 5.0)
    files = []
    for i, radius in enumerate((0.08, 0.09, 0.1)):
        f = tmp_path / f"head{i}.sofa"
        write_sofa(f, SphericalHead(radius=radius), grid_az, np.zeros_like(grid_az))
        files.append(f)
    out = tmp_path / "data"
    args = ["simulate", str(out), "--clips", "9", "--duration", "0.5", "-q", "--splits", "0.34,0.33,0.33"]
    res = runner.invoke(app, args + sum((["--hrtf", str(f)] for f in files), []))
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(open(out / "metadata.csv")))
    heads = {s: {r["listener_id"] for r in rows if r["split"] == s} for s in ("train", "val", "test")}
    assert all(h and all(x.startswith("sofa:head") for x in h) for h in heads.values())
    assert not (heads["train"] & heads["test"]) and not (heads["train"] & heads["val"])


def test_shared_fft_convolution_matches_direct():
    """render_clip's convolution (one FFT of the speech for several responses, trailing zeros
    dropped) equals plain convolution truncated to the clip length."""
    from binlearn.simulate import _convolve_heads

    rng = np.random.default_rng(0)
    x = rng.standard_normal(3000)
    long_ir = rng.standard_normal((2, 900))
    short_ir = np.zeros((2, 900))
    short_ir[:, 5:40] = rng.standard_normal((2, 35))
    silent = np.zeros((2, 50))
    out = _convolve_heads(x, [long_ir, short_ir, silent], 3000)
    for got, ir in zip(out, [long_ir, short_ir, silent]):
        ref = np.stack([np.convolve(x, ir[c])[:3000] for c in range(2)])
        assert got.shape == (2, 3000)
        np.testing.assert_allclose(got, ref, atol=1e-10)
