"""Simulation benchmarks: binaural RIR generation and dataset rendering speed.

    python benchmarks/bench_simulate.py [--repeats 5]

RIR section: ms per binaural RIR (``binaural_rir`` with a simulated listener: a
``SphericalHead`` with spectral perturbation, as ``binlearn simulate`` uses) in a 6x4x3 m
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

from binlearn.hrtf import sample_listener
from binlearn.room import absorption_from_rt60, binaural_rir, max_order_for

ROOM = (6.0, 4.0, 3.0)
HEAD_POS = np.array([3.6, 2.2, 1.6])
SOURCE = np.array([2.0, 1.3, 1.5])
FS = 16000


def _best_ms(fns: dict, repeats: int) -> dict:
    """Best-of-``repeats`` wall time in ms of each fn() (after one warm-up call each).

    The functions take turns within each repetition, so a change in machine load hits all of
    them alike (their ratio is what the target is about).
    """
    for fn in fns.values():
        fn()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: 1000 * min(v) for k, v in times.items()}


def _pra_run(order: int, alpha: float):
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

    return run


def bench_rir(repeats: int = 30, rt60s=(0.3, 0.6, 0.9)) -> list[dict]:
    """Time binaural RIRs (with and without tail) and pyroomacoustics at equal order."""
    head = sample_listener(np.random.default_rng(0))  # a simulated listener (with spectral perturbation)
    rows = []
    print(f"Binaural RIR, room {ROOM[0]:g}x{ROOM[1]:g}x{ROOM[2]:g} m, simulated listener, best of {repeats}")
    print(f"{'RT60':>5} {'order':>5} {'images':>7} {'length':>7} {'binlearn':>9} {'ISM-only':>9}"
          f" {'pra':>9} {'pra len':>7} {'ratio':>6} {'ratio ISM':>9}")
    for rt60 in rt60s:
        order = max_order_for(ROOM, rt60)
        alpha = absorption_from_rt60(ROOM, rt60)
        rir, info = binaural_rir(ROOM, SOURCE, HEAD_POS, 0.0, rt60, head, rng=np.random.default_rng(0))
        _, info_full = binaural_rir(ROOM, SOURCE, HEAD_POS, 0.0, rt60, head, rng=np.random.default_rng(0),
                                    late_tail=False)
        fns = {
            "tail": lambda: binaural_rir(ROOM, SOURCE, HEAD_POS, 0.0, rt60, head, rng=np.random.default_rng(0)),
            "ism": lambda: binaural_rir(ROOM, SOURCE, HEAD_POS, 0.0, rt60, head, rng=np.random.default_rng(0),
                                        late_tail=False),
        }
        pra_run = _pra_run(order, alpha)
        if pra_run is not None:
            fns["pra"] = pra_run
        ms = _best_ms(fns, repeats)
        pra_ms = ms.get("pra")
        pra_len = len(pra_run()[0][0]) if pra_run is not None else 0
        row = {"rt60": rt60, "order": order, "n_images": info["n_images"], "length": rir.shape[1],
               "n_images_full": info_full["n_images"], "ms": ms["tail"], "ms_ism_only": ms["ism"],
               "pra_ms": pra_ms, "pra_length": pra_len}
        rows.append(row)
        pra_s = f"{pra_ms:7.2f}ms {pra_len:7d}" if pra_ms is not None else f"{'n/a':>9} {'':>7}"
        ratio = f"{ms['tail'] / pra_ms:6.2f} {ms['ism'] / pra_ms:9.2f}" if pra_ms else ""
        print(f"{rt60:5.1f} {order:5d} {info['n_images']:7d} {rir.shape[1]:7d} {ms['tail']:7.2f}ms "
              f"{ms['ism']:7.2f}ms {pra_s} {ratio}")
    print("binlearn: two ears, early images up to the crossover + stochastic tail, 'length' samples "
          "(1.2 RT60); ISM-only: all images of order <= N, two ears, same length (for the last row: "
          f"{rows[-1]['n_images_full']} images of order <= {rows[-1]['order']}).")
    print("pra: one microphone, every image of order <= N (same N), RIR as long as its farthest image "
          "('pra len'); ratio = binlearn / pra (< 1: binlearn faster).")
    return rows


def bench_dataset(clips: int = 200, workers: int = 2, duration_s: float = 2.0) -> dict:
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
    parser.add_argument("--repeats", type=int, default=30, help="timed repetitions (best is reported)")
    parser.add_argument("--clips", type=int, default=200, help="clips for the dataset rendering benchmark")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip-rir", action="store_true")
    args = parser.parse_args(argv)
    if not args.skip_rir:
        bench_rir(repeats=args.repeats)
    bench_dataset(clips=args.clips, workers=args.workers)


if __name__ == "__main__":
    main()
