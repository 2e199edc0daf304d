"""Classic baselines on simulated heads, and the evaluate command's outputs."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
from scipy.signal import fftconvolve
from typer.testing import CliRunner

from binlearn.baselines import gcc_itd_table, localise
from binlearn.cli import app
from binlearn.evaluate import evaluate, format_table
from binlearn.hrtf import SphericalHead
from binlearn.room import direct_rir
from binlearn.signals import speech_like

runner = CliRunner()


@pytest.mark.parametrize("method", ["gcc-phat", "srp-phat", "music"])
def test_baselines_localise_clean_anechoic_speech(method):
    """Speech through the spherical head, direct path only: every method within 3 degrees."""
    head = SphericalHead()
    grid = np.arange(-90.0, 90.1, 5.0)
    steering = head.transfer(grid, np.zeros_like(grid), n_fft=512)
    itd = gcc_itd_table(steering)
    rng = np.random.default_rng(0)
    s = speech_like(2.0, rng)
    room = np.array([8.0, 6.0, 3.0])
    head_pos = np.array([4.0, 3.0, 1.5])
    errs = []
    for az in (-75.0, -42.5, -10.0, 0.0, 17.5, 33.0, 61.0, 80.0):
        src = head_pos + 2.0 * np.array([np.cos(np.radians(az)), np.sin(np.radians(az)), 0.0])
        h = direct_rir(room, src, head_pos, 0.0, head)
        x = np.stack([fftconvolve(s, h[c])[: s.size] for c in range(2)])
        est = localise(method, x, steering=steering, itd_table=itd, az_grid=grid)["azimuth"]
        errs.append(abs(est - az))
    assert max(errs) < 3.0, errs


def _table_cells(stdout: str, title: str) -> dict[tuple[str, str], float]:
    """Parse one printed table back into {(row value, method): number}."""
    lines = stdout.splitlines()
    i = lines.index(title)
    methods = lines[i + 1].split()[1:]
    cells = {}
    for line in lines[i + 2:]:
        if not line.strip():
            break
        parts = line.split()
        for m, v in zip(methods, parts[1:]):
            cells[(parts[0], m)] = float(v)
    return cells


def test_evaluate_outputs_match_printed_table_and_are_reproducible(tiny_dataset, tmp_path):
    args = ["evaluate", str(tiny_dataset), "--baselines", "gcc-phat,srp-phat,music", "--snrs", "inf,10,0,-10", "-q"]
    res = runner.invoke(app, args + ["--out", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    for f in ("results.json", "results.csv", "tables.txt", "error_vs_snr.png", "error_vs_rt60.png"):
        assert (tmp_path / "a" / f).is_file(), f
    printed = _table_cells(res.stdout, "utterance mean (deg) by snr")
    rows = list(csv.DictReader(open(tmp_path / "a" / "results.csv")))
    from_csv = {(r["value"], r["method"]): float(r["mean"]) for r in rows
                if r["group"] == "snr" and r["level"] == "utterance"}
    assert printed.keys() == from_csv.keys() and len(printed) == 4 * 3
    for k in printed:
        assert printed[k] == pytest.approx(round(from_csv[k], 1), abs=0.051)
    js = json.loads((tmp_path / "a" / "results.json").read_text())
    assert js["methods"] == ["gcc-phat", "srp-phat", "music"] and js["snrs"] == ["clean", "10dB", "0dB", "-10dB"]
    groups = {r["group"] for r in js["results"]}
    assert {"overall", "snr", "rt60", "noise", "snr_rt60", "hard"} <= groups
    assert {r["level"] for r in js["results"]} == {"utterance", "frame"}
    # Same inputs, same numbers.
    res2 = runner.invoke(app, args + ["--out", str(tmp_path / "b")])
    assert res2.exit_code == 0
    assert (tmp_path / "a" / "results.csv").read_bytes() == (tmp_path / "b" / "results.csv").read_bytes()


def test_evaluate_api_table_format(tiny_dataset):
    res = evaluate(tiny_dataset, [], ["gcc-phat"], snrs=[float("inf")], progress=False)
    table = format_table(res, "snr")
    assert re.search(r"clean\s+\d+\.\d", table)


@pytest.mark.parametrize("args, message", [
    (["--baselines", "gcc-phat,beamformit"], "unknown baseline"),
    (["--baselines", ""], "nothing to evaluate"),
    (["--model", "/nonexistent/model.pt"], "checkpoint not found"),
    (["--snrs", "0,abc"], "--snrs"),
])
def test_evaluate_bad_input(tiny_dataset, tmp_path, args, message):
    res = runner.invoke(app, ["evaluate", str(tiny_dataset), "-q", "--out", str(tmp_path / "o"), *args])
    assert res.exit_code == 1 and message in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
