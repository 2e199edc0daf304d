"""The ``binlearn`` command line: a thin Typer layer over the Python API.

simulate -> pretrain -> finetune -> evaluate, and ``doa`` for inference. Every failure the user can cause
prints one line ``error: ...`` and exits with status 1 (2 for usage errors, as Typer does).
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import List, Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Binaural spatial representation learning (feature distillation) and talker DoA estimation.")


def _fail(msg: str, code: int = 1):
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(code)


def clean_errors(fn):
    """Turn the package's own errors (and unreadable paths) into one line on stderr + exit 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except KeyboardInterrupt:
            typer.echo("interrupted (outputs written so far are complete; use --resume where available)", err=True)
            raise typer.Exit(130)
        except (ValueError, RuntimeError, OSError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            _fail(first)

    return wrapper


def _floats(spec: str, n: int | None, name: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(v) for v in spec.split(",") if v.strip() != "")
    except ValueError:
        _fail(f"{name}: expected comma-separated numbers, got {spec!r}")
    if n is not None and len(vals) != n:
        _fail(f"{name}: expected {n} comma-separated numbers, got {spec!r}")
    if any(math.isnan(v) for v in vals):
        _fail(f"{name}: NaN is not allowed ({spec!r})")
    return vals


def _range(spec: str, name: str) -> tuple[float, float]:
    v = _floats(spec, None, name)
    if len(v) == 1:
        return (v[0], v[0])
    if len(v) != 2:
        _fail(f"{name}: expected LO,HI (or one value), got {spec!r}")
    return v  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------------------------


@app.command()
@clean_errors
def simulate(
    out_dir: Path = typer.Argument(..., help="Folder for the dataset (clips/ + metadata.csv + config.json)."),
    clips: int = typer.Option(400, "--clips", "-n", help="Number of clips."),
    seed: int = typer.Option(0, help="Random seed: same seed, byte-identical output."),
    splits: str = typer.Option("0.8,0.1,0.1", help="Train,val,test fractions."),
    duration: float = typer.Option(2.0, help="Clip duration in seconds."),
    speech_dir: Optional[Path] = typer.Option(None, help="Folder tree of wav/flac/ogg speech (e.g. LibriSpeech). "
                                              "Default: built-in speech-like generator."),
    hrtf: List[Path] = typer.Option([], help="SOFA file (SimpleFreeFieldHRIR); repeat for several heads. "
                                    "Default: random analytic spherical heads."),
    rt60: str = typer.Option("0,1.0", help="RT60 range LO,HI in seconds (0 = anechoic)."),
    snr: str = typer.Option("-10,20", help="SNR range LO,HI in dB used when training remixes noise."),
    noise: str = typer.Option("white,pink,babble", help="Noise kinds to draw from."),
    azimuth: str = typer.Option("-90,90", help="Talker azimuth range in degrees (+ = left)."),
    full_circle: bool = typer.Option(False, help="Allow azimuths behind the head (-180..180)."),
    distance: str = typer.Option("1,3", help="Talker distance range in metres."),
    room_min: str = typer.Option("4,3.5,2.5", help="Smallest room (x,y,z metres)."),
    room_max: str = typer.Option("10,8,4", help="Largest room (x,y,z metres)."),
    interferer_prob: float = typer.Option(0.3, help="Probability of a point-source interferer in the noise."),
    save_rirs: bool = typer.Option(False, help="Also write each clip's binaural RIR."),
    workers: int = typer.Option(1, help="Parallel worker processes (output does not depend on it)."),
    resume: bool = typer.Option(False, help="Finish an interrupted run with the same settings."),
    overwrite: bool = typer.Option(False, help="Replace an existing dataset in OUT_DIR."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
):
    """Simulate binaural speech in random rooms: clean, reverberant and noise wavs plus metadata.csv."""
    from .progress import Progress
    from .simulate import SimConfig, simulate as run, validate_config

    cfg = SimConfig(
        clips=clips, seed=seed, splits=_floats(splits, 3, "--splits"), duration_s=duration,
        speech_dir=str(speech_dir) if speech_dir else None, hrtf=tuple(str(h) for h in hrtf),
        rt60_range=_range(rt60, "--rt60"), snr_range=_range(snr, "--snr"),
        noise_kinds=tuple(k.strip() for k in noise.split(",") if k.strip()), azimuth_range=_range(azimuth, "--azimuth"),
        full_circle=full_circle, distance_range=_range(distance, "--distance"),
        room_min=_floats(room_min, 3, "--room-min"), room_max=_floats(room_max, 3, "--room-max"),
        interferer_prob=interferer_prob, save_rirs=save_rirs)
    validate_config(cfg)  # fail on bad parameters before printing anything else
    source = f"speech from {speech_dir}" if speech_dir else "built-in speech-like generator (no --speech-dir)"
    heads = f"SOFA {', '.join(h.name for h in hrtf)}" if hrtf else "random spherical heads"
    typer.echo(f"simulating {clips} clips into {out_dir}: {source}; {heads}", err=True)
    bar = Progress(clips, "simulate", enabled=not quiet)
    meta = run(out_dir, cfg, workers=workers, overwrite=overwrite, resume=resume,
               progress=lambda d, t: bar.update(d, unit="clips"))
    bar.close()
    typer.echo(f"wrote {meta}")


@app.command()
@clean_errors
def pretrain(
    data_dir: Path = typer.Argument(..., help="Dataset from `binlearn simulate` (labels are never read)."),
    out: Path = typer.Option(..., "--out", "-o", help="Pretrained checkpoint to write (.pt)."),
    targets: str = typer.Option("gcc+ipd+ild", help="Distillation targets: gcc, ipd, ild joined by + or ,."),
    loss: str = typer.Option("l1", help="l1 or mse."),
    epochs: int = typer.Option(30, help="Epochs (ignored when --steps > 0)."),
    steps: int = typer.Option(0, help="Total optimiser steps (overrides --epochs)."),
    batch_size: int = typer.Option(16),
    lr: float = typer.Option(2e-3),
    segment: float = typer.Option(1.0, help="Training crop length in seconds."),
    snr: str = typer.Option("-10,20", help="Random SNR range (dB) for remixing noise."),
    patience: int = typer.Option(8, help="Early stop after this many epochs without validation improvement."),
    causal: bool = typer.Option(False, help="Causal encoder (no look-ahead; streaming)."),
    seed: int = typer.Option(0),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    resume: bool = typer.Option(False, help="Continue an interrupted run writing the same --out."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
):
    """Label-free pretraining: predict clean spatial features (GCC-PHAT/IPD/ILD) from noisy reverberant input."""
    from .model import ModelConfig
    from .train import TrainConfig, pretrain as run

    if out.exists() and not resume and out.is_dir():
        _fail(f"--out {out} is a directory; give a file name ending in .pt")
    tcfg = TrainConfig(epochs=epochs, steps=steps, batch_size=batch_size, lr=lr, segment_s=segment,
                       snr_range=_range(snr, "--snr"), patience=patience, seed=seed, targets=targets, loss=loss)
    summary = run(data_dir, out, tcfg=tcfg, mcfg=ModelConfig(causal=causal), device=device, resume=resume,
                  progress=not quiet, log=lambda m: typer.echo(m, err=True))
    typer.echo(f"wrote {out} (best validation loss {summary['best_val_loss']:.4f} at epoch {summary['best_epoch']}, "
               f"{summary['steps']} steps, {summary['train_seconds']:.0f} s; {summary['stopped']})")


@app.command()
@clean_errors
def finetune(
    data_dir: Path = typer.Argument(..., help="Dataset from `binlearn simulate` (needs azimuth labels)."),
    out: Path = typer.Option(..., "--out", "-o", help="DoA model checkpoint to write (.pt)."),
    init: Optional[Path] = typer.Option(None, help="Pretrained checkpoint: copy its encoder (predictor dropped). "
                                        "Without it: same network from random weights (supervised baseline)."),
    label_fraction: float = typer.Option(1.0, help="Train on this random fraction of the labelled clips."),
    freeze_encoder: bool = typer.Option(False, help="Train only the DoA head (linear probe)."),
    inactive_weight: float = typer.Option(1.0, help="Weight of the uniform ('no direction') target on frames "
                                          "without the talker; 0 trains on talker frames only."),
    epochs: int = typer.Option(30),
    steps: int = typer.Option(0),
    batch_size: int = typer.Option(16),
    lr: float = typer.Option(2e-3),
    segment: float = typer.Option(1.0),
    snr: str = typer.Option("-10,20"),
    patience: int = typer.Option(8),
    causal: bool = typer.Option(False, help="Causal encoder (ignored with --init: the pretrained one decides)."),
    full_circle: bool = typer.Option(False, help="Azimuth grid over the full circle (-180..175)."),
    seed: int = typer.Option(0),
    device: str = typer.Option("auto"),
    resume: bool = typer.Option(False),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
):
    """Supervised DoA training, from a pretrained encoder (--init) or from scratch."""
    from .model import ModelConfig
    from .train import TrainConfig, finetune as run

    tcfg = TrainConfig(epochs=epochs, steps=steps, batch_size=batch_size, lr=lr, segment_s=segment,
                       snr_range=_range(snr, "--snr"), patience=patience, seed=seed, label_fraction=label_fraction,
                       freeze_encoder=freeze_encoder, inactive_weight=inactive_weight)
    summary = run(data_dir, out, init=init, tcfg=tcfg, mcfg=ModelConfig(causal=causal, full_circle=full_circle),
                  device=device, resume=resume, progress=not quiet, log=lambda m: typer.echo(m, err=True))
    mae = summary.get("best", {}).get("val_mae_deg", float("nan"))
    typer.echo(f"wrote {out} (best validation loss {summary['best_val_loss']:.4f}, validation mean error "
               f"{mae:.1f} deg at epoch {summary['best_epoch']}; {summary['steps']} steps, "
               f"{summary['train_seconds']:.0f} s; {summary['stopped']})")


@app.command()
@clean_errors
def evaluate(
    data_dir: Path = typer.Argument(..., help="Dataset from `binlearn simulate`; its test split is used."),
    model: List[Path] = typer.Option([], "--model", "-m", help="DoA checkpoint; repeat to compare several."),
    baselines: str = typer.Option("gcc-phat,srp-phat,music", help="Classic methods (comma list, '' for none)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for results.json/.csv, tables and plots."),
    snrs: str = typer.Option("inf,20,10,5,0,-5,-10", help="SNR grid in dB (inf = no noise)."),
    hrtf: Optional[str] = typer.Option(None, help="Reference head for the baselines' steering (default sphere)."),
    split: str = typer.Option("test"),
    device: str = typer.Option("auto"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
):
    """Score models and classic baselines by SNR, RT60 and noise kind (utterance and frame level)."""
    from .evaluate import evaluate as run, report

    res = run(data_dir, [str(m) for m in model], [b for b in baselines.split(",") if b.strip()], out_dir=out,
              snrs=_floats(snrs, None, "--snrs"), hrtf=hrtf, split=split, device=device, progress=not quiet)
    typer.echo(f"{res['clips']} {split} clips from {data_dir}")
    typer.echo(report(res))
    if out:
        typer.echo(f"wrote {out}/results.json, results.csv, tables.txt and plots")


@app.command()
def doa(
    files: List[Path] = typer.Argument(..., help="Binaural recordings (stereo: channel 0 = left ear)."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="DoA checkpoint (default: bundled model)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
    frames: bool = typer.Option(False, "--frames", help="Include the per-frame azimuth track (10 ms hop)."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write a PNG with the tracks and a polar view."),
    device: str = typer.Option("cpu"),
):
    """Where is the talker? Azimuth (deg, + = left) and confidence per file."""
    from .infer import Localiser

    try:
        loc = Localiser(model, device)
    except (ValueError, RuntimeError, OSError) as e:
        _fail(str(e).splitlines()[0])
    failed = 0
    results = []
    for f in files:
        try:
            r = loc(f, label=str(f))
        except (ValueError, RuntimeError, OSError) as e:
            failed += 1
            msg = str(e).splitlines()[0]
            typer.echo(f"error: {msg}", err=True)
            if as_json:
                typer.echo(json.dumps({"file": str(f), "azimuth": None, "confidence": 0.0, "error": msg}))
            continue
        results.append(r)
        if r.azimuth is None:
            typer.echo(f"{f}: no talker found (silence or below {-60} dBFS)", err=True)
        if as_json:
            typer.echo(json.dumps(r.to_json(frames)))
        else:
            if r.azimuth is None:
                typer.echo(f"{str(f)}\tno talker (silence)\tconfidence 0.00")
            else:
                typer.echo(f"{str(f)}\tazimuth {r.azimuth:+6.1f} deg ({'left' if r.azimuth > 0 else 'right' if r.azimuth < 0 else 'ahead'})"
                           f"\tconfidence {r.confidence:.2f}\tactive {r.active_s:.1f}/{r.duration_s:.1f} s")
            if frames:
                for t, a in zip(r.frame_times, r.frames):
                    typer.echo(f"  {t:8.2f} s  " + ("-" if a is None else f"{a:+6.1f}"))
    if plot is not None:
        try:
            from .infer import plot_tracks

            plot_tracks(results, plot)
        except ImportError:
            typer.echo("error: --plot needs matplotlib: pip install 'binlearn[plot]'", err=True)
            failed += 1
        except OSError as e:
            typer.echo(f"error: cannot write plot {plot}: {e.strerror or e}", err=True)
            failed += 1
    if failed:
        raise typer.Exit(1)


def main():  # pragma: no cover - console entry for `python -m binlearn`
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
