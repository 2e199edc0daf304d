"""Evaluation: models and classic baselines side by side on the test split, across SNR, RT60 and noise kind.

For every test clip the stored binaural noise is remixed with the reverberant speech at each SNR of a fixed
grid (``inf`` = no noise); noise is fixed per clip, so two runs give identical numbers. Each method gives an
utterance-level azimuth (frames pooled over frames where the *mixture* is active, as at inference time) and
per-frame azimuths, scored on frames where the *clean* talker is active.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from .audio import atomic_write_text
from .baselines import METHODS, gcc_itd_table, localise
from .data import load_split, mix_at_snr
from .features import FeatureConfig, active_frames, input_features
from .hrtf import HRTF, load_hrtf
from .model import frames_to_azimuth, pool_utterance
from .progress import Progress
from .train import load_doa_model, resolve_device

SNR_GRID = (math.inf, 20.0, 10.0, 5.0, 0.0, -5.0, -10.0)
RT60_BINS = ((0.0, 0.0), (0.0, 0.3), (0.3, 0.6), (0.6, 10.0))   # anechoic, then (lo, hi] bins


class EvaluationError(ValueError):
    """Bad evaluation request (unknown baseline, no models or baselines, ...)."""


def rt60_bin(rt60: float) -> str:
    if rt60 <= 0:
        return "anechoic"
    for lo, hi in RT60_BINS[1:]:
        if lo < rt60 <= hi:
            return f"{lo:.1f}-{hi:.1f}s" if hi < 10 else f">{lo:.1f}s"
    return f">{RT60_BINS[-1][0]:.1f}s"


def snr_label(snr: float) -> str:
    return "clean" if math.isinf(snr) else f"{snr:g}dB"


def angular_error(est, true, full_circle: bool = False) -> np.ndarray:
    """Absolute azimuth error in degrees (wrapped to [0, 180] on a full circle)."""
    e = np.abs(np.asarray(est, float) - np.asarray(true, float))
    return np.minimum(e, 360 - e) if full_circle else e


def summarise(errors: np.ndarray) -> dict:
    """Mean / median absolute error and accuracy within 5 and 10 degrees of an error array."""
    e = np.asarray(errors, float)
    if e.size == 0:
        return {"n": 0, "mean": float("nan"), "median": float("nan"), "acc5": float("nan"), "acc10": float("nan")}
    return {"n": int(e.size), "mean": float(e.mean()), "median": float(np.median(e)),
            "acc5": float((e <= 5).mean()), "acc10": float((e <= 10).mean())}


@dataclass
class MethodOutput:
    utterance: np.ndarray          # (clips,) azimuth degrees
    frames: list[np.ndarray]       # per clip (frames,) azimuth degrees (NaN where undefined)


def model_method(path: str | Path, device: str = "auto") -> tuple[str, Callable[[torch.Tensor], MethodOutput], bool]:
    """A DoA checkpoint as an evaluation method: returns (name, fn(x (B,2,T)) -> MethodOutput, full_circle)."""
    model, fcfg, mcfg, _ = load_doa_model(path)
    dev = resolve_device(device)
    model.to(dev)

    def run(x: torch.Tensor) -> MethodOutput:
        utt, frames = [], []
        with torch.no_grad():
            for i in range(0, x.shape[0], 16):
                xb = x[i:i + 16].to(dev)
                logits = model(input_features(xb, fcfg)).float()
                mask = active_frames(xb, fcfg)
                utt.append(frames_to_azimuth(pool_utterance(logits, mask), mcfg).cpu())
                frames.extend(frames_to_azimuth(logits, mcfg).cpu().numpy())
        return MethodOutput(torch.cat(utt).numpy(), frames)

    return Path(path).stem, run, bool(mcfg.full_circle)


def baseline_method(name: str, hrtf: HRTF, az_grid: np.ndarray, fcfg: FeatureConfig) -> Callable[[torch.Tensor], MethodOutput]:
    """A classic localiser using the steering vectors of a reference head (the listener is unknown to it)."""
    steering = hrtf.transfer(az_grid, np.zeros_like(az_grid), n_fft=512)
    itd = gcc_itd_table(steering)

    def run(x: torch.Tensor) -> MethodOutput:
        masks = active_frames(x, fcfg).numpy()
        utt, frames = [], []
        for xi, mi in zip(x.numpy(), masks):
            r = localise(name, xi, steering=steering, itd_table=itd, az_grid=az_grid, mask=mi)
            utt.append(r["azimuth"])
            frames.append(np.asarray(r["frames"], float))
        return MethodOutput(np.array(utt), frames)

    return run


def evaluate(data_dir: str | Path, models: Sequence[str | Path] = (), baselines: Sequence[str] = METHODS, *,
             out_dir: str | Path | None = None, snrs: Sequence[float] = SNR_GRID, hrtf: str | None = None,
             split: str = "test", device: str = "auto", progress: bool = True) -> dict:
    """Score every model and baseline on ``split`` of ``data_dir``; write results.json/csv (+ plots) to ``out_dir``.

    Returns ``{"methods": [...], "conditions": ..., "results": rows}`` where each row is
    ``{"method", "level" (utterance|frame), "group" (overall|snr|rt60|noise|snr_rt60), "value", n, mean, median,
    acc5, acc10}``.
    """
    baselines = [b.strip() for b in baselines if b.strip()]
    bad = [b for b in baselines if b not in METHODS]
    if bad:
        raise EvaluationError(f"unknown baseline {bad[0]!r} (choose from {', '.join(METHODS)})")
    if not models and not baselines:
        raise EvaluationError("nothing to evaluate: give --model and/or --baselines")
    names = [Path(m).stem for m in models]
    if len(set(names)) != len(names):
        raise EvaluationError("two models share a file name; give them distinct names")
    # Load models first so a bad checkpoint fails before any work.
    methods = [model_method(m, device) for m in models]
    full_circle = any(fc for _, _, fc in methods)
    fcfg = FeatureConfig()
    az_grid = np.arange(-180.0, 180.0, 5.0) if full_circle else np.arange(-90.0, 90.0 + 1e-9, 5.0)
    ref = load_hrtf(hrtf)
    runs: list[tuple[str, Callable]] = [(n, f) for n, f, _ in methods]
    runs += [(b, baseline_method(b, ref, az_grid, fcfg)) for b in baselines]

    clips = load_split(data_dir, split, labels=True)
    truth = clips.azimuth.numpy()
    clean_mask = active_frames(clips.clean, fcfg).numpy()
    rt_bins = [rt60_bin(float(r.get("rt60_s", 0) or 0)) for r in clips.rows]
    kinds = [r.get("noise_kind", "?") for r in clips.rows]

    per: dict[str, list[dict]] = {name: [] for name, _ in runs}   # per method: one dict per (snr, clip)
    bar = Progress(len(snrs) * len(runs), "evaluate", enabled=progress)
    done = 0
    for snr in snrs:
        x = mix_at_snr(clips.reverb, clips.noise, torch.full((len(clips),), float(snr)))
        for name, fn in runs:
            res = fn(x)
            for i in range(len(clips)):
                fr = res.frames[i]
                m = clean_mask[i][: len(fr)] if len(fr) == clean_mask.shape[1] else np.ones(len(fr), bool)
                fe = angular_error(fr[m], truth[i], full_circle)
                per[name].append({"snr": snr, "clip": i, "utt": float(angular_error(res.utterance[i], truth[i],
                                                                                    full_circle)),
                                  "frames": fe[np.isfinite(fe)]})
            done += 1
            bar.update(done, unit="runs")
    bar.close()

    rows = []
    for name in per:
        recs = per[name]

        def add(group, value, sel):
            sel = list(sel)
            rows.append({"method": name, "level": "utterance", "group": group, "value": value,
                         **summarise([r["utt"] for r in sel])})
            fr = np.concatenate([r["frames"] for r in sel]) if sel else np.array([])
            rows.append({"method": name, "level": "frame", "group": group, "value": value, **summarise(fr)})

        add("overall", "all", recs)
        for snr in snrs:
            add("snr", snr_label(snr), (r for r in recs if r["snr"] == snr))
        for b in sorted(set(rt_bins), key=_rt_order):
            add("rt60", b, (r for r in recs if rt_bins[r["clip"]] == b))
            for snr in snrs:
                add("snr_rt60", f"{snr_label(snr)}|{b}", (r for r in recs if rt_bins[r["clip"]] == b and r["snr"] == snr))
        for k in sorted(set(kinds)):
            add("noise", k, (r for r in recs if kinds[r["clip"]] == k))
        # The headline condition of the paper's claims: noisy (SNR <= 0 dB) and reverberant (RT60 >= 0.6 s).
        hard = [r for r in recs if r["snr"] <= 0 and float(clips.rows[r["clip"]].get("rt60_s", 0) or 0) >= 0.6]
        add("hard", "snr<=0dB&rt60>=0.6s", hard)

    result = {"data_dir": str(data_dir), "split": split, "clips": len(clips), "methods": list(per),
              "snrs": [snr_label(s) for s in snrs], "reference_hrtf": ref.name, "results": rows}
    if out_dir is not None:
        write_results(result, Path(out_dir))
    return result


def _rt_order(label: str) -> float:
    return -1.0 if label == "anechoic" else float(label.strip(">s").split("-")[0])


def format_table(result: dict, group: str = "snr", level: str = "utterance", stat: str = "mean") -> str:
    """A plain-text table: rows = condition values, columns = methods, cells = ``stat`` (1 decimal)."""
    rows = [r for r in result["results"] if r["group"] == group and r["level"] == level]
    values = list(dict.fromkeys(r["value"] for r in rows))
    methods = result["methods"]
    cell = {(r["value"], r["method"]): r[stat] for r in rows}
    w = max(12, *(len(m) + 2 for m in methods))
    scale = 100.0 if stat.startswith("acc") else 1.0
    unit = "%" if stat.startswith("acc") else "deg"
    out = io.StringIO()
    out.write(f"{level} {stat} ({unit}) by {group}\n")
    out.write(f"{group:<22}" + "".join(f"{m:>{w}}" for m in methods) + "\n")
    for v in values:
        out.write(f"{v:<22}" + "".join(f"{scale * cell[(v, m)]:>{w}.1f}" for m in methods) + "\n")
    return out.getvalue()


def write_results(result: dict, out_dir: Path) -> None:
    """results.json, results.csv, the printed tables (tables.txt) and PNG plots when matplotlib is present."""
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "results.json", json.dumps(result, indent=1, allow_nan=True) + "\n")
    buf = io.StringIO()
    fields = ["method", "level", "group", "value", "n", "mean", "median", "acc5", "acc10"]
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for r in result["results"]:
        w.writerow({k: r[k] for k in fields})
    atomic_write_text(out_dir / "results.csv", buf.getvalue())
    atomic_write_text(out_dir / "tables.txt", report(result))
    try:
        plot_results(result, out_dir)
    except ImportError:
        pass


def report(result: dict) -> str:
    """The tables printed by ``binlearn evaluate``."""
    parts = [format_table(result, "snr"), format_table(result, "rt60"), format_table(result, "noise"),
             format_table(result, "hard"), format_table(result, "snr", "frame"),
             format_table(result, "snr", "utterance", "acc10")]
    return "\n".join(parts)


def plot_results(result: dict, out_dir: Path) -> list[Path]:
    """error_vs_snr.png and error_vs_rt60.png (utterance-level mean error per method)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for group, fname, xlabel in (("snr", "error_vs_snr.png", "SNR"), ("rt60", "error_vs_rt60.png", "RT60")):
        rows = [r for r in result["results"] if r["group"] == group and r["level"] == "utterance"]
        values = list(dict.fromkeys(r["value"] for r in rows))
        fig, ax = plt.subplots(figsize=(6, 4))
        for m in result["methods"]:
            ys = [next(r["mean"] for r in rows if r["method"] == m and r["value"] == v) for v in values]
            ax.plot(range(len(values)), ys, marker="o", label=m)
        ax.set_xticks(range(len(values)), values)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("mean absolute azimuth error (deg)")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        tmp = out_dir / f".{fname}.tmp.png"
        fig.savefig(tmp, dpi=120)
        plt.close(fig)
        tmp.replace(out_dir / fname)
        paths.append(out_dir / fname)
    return paths
