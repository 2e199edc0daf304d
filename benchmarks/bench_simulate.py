"""Simulation benchmarks: binaural RIR generation and dataset rendering speed.

    python benchmarks/bench_simulate.py [--repeats 5]

RIR section: ms per binaural RIR (``binaural_rir`` with a ``SphericalHead``) in a 6x4x3 m
room at RT60 0.3/0.6/0.9 s with the default max order, both with the stochastic late tail
(the default) and as a plain full image-source model (``late_tail=False``, every image of
order <= N rendered binaurally). If pyroomacoustics is importable, its time for the same
room, order and absorption with one microphone (image-source model + compute_rir) is
printed with the ratio binlearn / pyroomacoustics (< 1 means binlearn is faster).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from binlearn.hrtf import SphericalHead
from binlearn.room import absorption_from_rt60, binaural_rir, max_order_for

ROOM = (6.0, 4.0, 3.0)
HEAD_POS = np.array([3.6, 2.2, 1.6])
SOURCE = np.array([2.0, 1.3, 1.5])
FS = 16000


def _best_ms(fn, repeats: int) -> float:
    """Best-of-``repeats`` wall time of fn() in ms (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * min(times)


def _pra_ms(order: int, alpha: float, repeats: int) -> float | None:
    try:
        import pyroomacoustics as pra
    except ImportError:
        return None

    def run():
        room = pra.ShoeBox(ROOM, fs=FS, materials=pra.Material(alpha), max_order=order, air_absorption=False)
        room.add_source(SOURCE)
        room.add_microphone(HEAD_POS)
        room.image_source_model()
        room.compute_rir()
        return room.rir

    return _best_ms(run, repeats)


def bench_rir(repeats: int = 5, rt60s=(0.3, 0.6, 0.9)) -> list[dict]:
    """Time binaural RIRs (with and without tail) and pyroomacoustics at equal order."""
    head = SphericalHead()
    rows = []
    print(f"Binaural RIR, room {ROOM[0]:g}x{ROOM[1]:g}x{ROOM[2]:g} m, SphericalHead, best of {repeats}")
    print(f"{'RT60':>5} {'order':>5} {'images':>7} {'tail':>6} {'binlearn':>9} {'ISM-only':>9}"
          f" {'pra':>9} {'ratio':>6} {'ratio ISM':>9}")
    for rt60 in rt60s:
        order = max_order_for(ROOM, rt60)
        alpha = absorption_from_rt60(ROOM, rt60)
        _, info = binaural_rir(ROOM, SOURCE, HEAD_POS, 0.0, rt60, head, rng=np.random.default_rng(0))
        _, info_full = binaural_rir(ROOM, SOURCE, HEAD_POS, 0.0, rt60, head, rng=np.random.default_rng(0),
                                    late_tail=False)
        ms = _best_ms(lambda: binaural_rir(ROOM, SOURCE, HEAD_POS, 0.0, rt60, head,
                                           rng=np.random.default_rng(0)), repeats)
        ms_full = _best_ms(lambda: binaural_rir(ROOM, SOURCE, HEAD_POS, 0.0, rt60, head,
                                                rng=np.random.default_rng(0), late_tail=False), repeats)
        pra_ms = _pra_ms(order, alpha, repeats)
        row = {"rt60": rt60, "order": order, "n_images": info["n_images"], "n_tail": info["n_tail"],
               "n_images_full": info_full["n_images"], "ms": ms, "ms_ism_only": ms_full, "pra_ms": pra_ms}
        rows.append(row)
        pra_s = f"{pra_ms:8.1f}ms" if pra_ms is not None else f"{'n/a':>9}"
        ratio = f"{ms / pra_ms:6.2f}" if pra_ms else f"{'':>6}"
        ratio_full = f"{ms_full / pra_ms:9.2f}" if pra_ms else ""
        print(f"{rt60:5.1f} {order:5d} {info['n_images']:7d} {info['n_tail']:6d} {ms:7.1f}ms {ms_full:7.1f}ms"
              f" {pra_s} {ratio} {ratio_full}")
    print("images: ISM arrivals before the crossover (tail mode); ISM-only renders all "
          f"{rows[-1]['n_images_full']} images of order <= {rows[-1]['order']} at the last RT60.")
    print("pra renders every image of order <= N (same N): 'ratio ISM' is the like-for-like comparison; "
          "'ratio' times binlearn's default (early images + stochastic tail) against the same pra run.")
    return rows


def bench_dataset(clips: int = 60, workers: int = 2, duration_s: float = 2.0) -> dict:
    """Render a default dataset (RT60 0-1 s, diffuse noise + interferers) and report times real time."""
    import tempfile

    from binlearn.simulate import SimConfig, render_clip, simulate

    cfg = SimConfig(clips=clips, seed=0, duration_s=duration_s)
    render_clip(cfg, 0, "train", None)  # warm caches (babble pool, FFT plans) outside the timing
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        simulate(Path(tmp) / "data", cfg, workers=workers)
        wall = time.perf_counter() - t0
    audio_s = clips * duration_s
    print(f"Dataset rendering: {clips} clips x {duration_s:g} s with {workers} worker(s): {wall:.2f} s wall, "
          f"{audio_s / wall:.0f}x real time (clean + reverberant + noise wavs written)")
    return {"clips": clips, "workers": workers, "wall_s": wall, "x_real_time": audio_s / wall}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions (best is reported)")
    parser.add_argument("--clips", type=int, default=60, help="clips for the dataset rendering benchmark")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip-rir", action="store_true")
    args = parser.parse_args(argv)
    if not args.skip_rir:
        bench_rir(repeats=args.repeats)
    bench_dataset(clips=args.clips, workers=args.workers)


if __name__ == "__main__":
    main()
