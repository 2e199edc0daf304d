"""Reproduce the paper's claims at laptop scale: simulate -> pretrain -> finetune (pretrained / from scratch,
100 % and 10 % of the labels) -> evaluate against GCC-PHAT, SRP-PHAT and MUSIC, for several seeds.

    python examples/reproduce.py            # 3 seeds, about an hour on 2 CPU cores
    python examples/reproduce.py --quick    # 1 small seed, a few minutes (checks the pipeline, not the claims)

Every stage is a plain `binlearn` command (printed before it runs), skipped when its output already exists, so an
interrupted run continues where it stopped. Results: OUT/seed*/eval/results.json per seed, and OUT/summary.md +
OUT/summary.json with mean +- standard deviation over seeds and a verdict on each claim.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

FULL = dict(clips=800, duration=2.0, pretrain_steps=800, finetune_steps=300, seeds=(0, 1, 2))
QUICK = dict(clips=120, duration=1.0, pretrain_steps=40, finetune_steps=30, seeds=(0,))
CLASSIC = ("gcc-phat", "srp-phat", "music")
NOISY = ("0dB", "-5dB", "-10dB")


def run(cmd: list[str], log) -> None:
    line = " ".join(shlex.quote(c) for c in cmd)
    print(f"$ {line}", flush=True)
    log.write(f"$ {line}\n")
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    log.write(f"  ({time.perf_counter() - t0:.0f} s)\n")
    log.flush()


def seed_pipeline(out: Path, seed: int, p: dict, device: str, workers: int, log) -> Path:
    d = out / f"seed{seed}"
    data, ev = d / "data", d / "eval"
    bl = [sys.executable, "-m", "binlearn"]
    if not (data / "metadata.csv").is_file():
        run(bl + ["simulate", str(data), "--clips", str(p["clips"]), "--duration", str(p["duration"]), "--seed", str(seed),
                  "--workers", str(workers), "-q", "--resume"], log)
    common = ["--device", device, "--seed", str(seed), "-q"]
    pre = d / "pretrained.pt"
    if not pre.is_file():
        run(bl + ["pretrain", str(data), "--out", str(pre), "--steps", str(p["pretrain_steps"]), *common], log)
    models = []
    for frac in (1.0, 0.1):
        tag = f"{round(frac * 100)}"
        for name, extra in ((f"pretrained-{tag}", ["--init", str(pre)]), (f"supervised-{tag}", [])):
            m = d / f"{name}.pt"
            if not m.is_file():
                run(bl + ["finetune", str(data), "--out", str(m), "--steps", str(p["finetune_steps"]),
                          "--label-fraction", str(frac), *extra, *common], log)
            models.append(m)
    if not (ev / "results.json").is_file():
        run(bl + ["evaluate", str(data), *sum((["--model", str(m)] for m in models), []), "--out", str(ev),
                  "--device", device, "-q"], log)
    return ev / "results.json"


def cell(res: dict, method: str, group: str, value: str, stat: str = "mean", level: str = "utterance") -> float:
    for r in res["results"]:
        if r["method"] == method and r["group"] == group and r["value"] == value and r["level"] == level:
            return r[stat]
    return float("nan")


def noisy_mean(res: dict, method: str) -> float:
    return statistics.fmean(cell(res, method, "snr", v) for v in NOISY)


def fmt(vals: list[float]) -> str:
    vals = [v for v in vals if not math.isnan(v)]
    if not vals:
        return "n/a"
    if len(vals) == 1:
        return f"{vals[0]:.1f}"
    return f"{statistics.fmean(vals):.1f} ± {statistics.stdev(vals):.1f}"


def summarise(results: list[dict]) -> tuple[str, dict]:
    methods = results[0]["methods"]
    rows: list[tuple[str, callable]] = [(f"SNR {v}", (lambda r, m, v=v: cell(r, m, "snr", v))) for v in results[0]["snrs"]]
    rows.append(("SNR ≤ 0 dB (mean of 0/−5/−10)", noisy_mean))
    rt_values = [r["value"] for r in results[0]["results"] if r["group"] == "rt60" and r["method"] == methods[0]
                 and r["level"] == "utterance"]
    rows += [(f"RT60 {v}", (lambda r, m, v=v: cell(r, m, "rt60", v))) for v in rt_values]
    rows.append(("SNR ≤ 0 dB and RT60 ≥ 0.6 s", lambda r, m: cell(r, m, "hard", "snr<=0dB&rt60>=0.6s")))
    rows.append(("all conditions", lambda r, m: cell(r, m, "overall", "all")))
    rows.append(("all conditions, frame level", lambda r, m: cell(r, m, "overall", "all", level="frame")))
    table = {label: {m: [fn(r, m) for r in results] for m in methods} for label, fn in rows}

    lines = ["| condition | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for label in table:
        lines.append(f"| {label} | " + " | ".join(fmt(table[label][m]) for m in methods) + " |")

    def mean(label, m):
        return statistics.fmean(table[label][m])

    def wins(label, a, b):
        return sum(x < y for x, y in zip(table[label][a], table[label][b]))

    n = len(results)
    verdicts = {}
    noisy, reverb, hard = "SNR ≤ 0 dB (mean of 0/−5/−10)", f"RT60 {rt_values[-1]}", "SNR ≤ 0 dB and RT60 ≥ 0.6 s"
    classic = [m for m in methods if m in CLASSIC]
    for tag in ("100", "10"):
        pre, sup = f"pretrained-{tag}", f"supervised-{tag}"
        if pre not in methods or sup not in methods:
            continue
        verdicts[f"claim1_noisy_{tag}"] = {
            "pretrained": mean(noisy, pre), "supervised": mean(noisy, sup), "seed_wins": f"{wins(noisy, pre, sup)}/{n}",
            "held": mean(noisy, pre) < mean(noisy, sup)}
        verdicts[f"claim2_reverberant_{tag}"] = {
            "condition": reverb, "pretrained": mean(reverb, pre), "supervised": mean(reverb, sup),
            "seed_wins": f"{wins(reverb, pre, sup)}/{n}", "held": mean(reverb, pre) < mean(reverb, sup)}
        if classic:
            best = min(classic, key=lambda m: mean(hard, m))
            verdicts[f"claim3_beat_classic_{tag}"] = {
                "condition": hard, "pretrained": mean(hard, pre), "supervised": mean(hard, sup),
                "best_classic": best, "best_classic_error": mean(hard, best),
                "held": max(mean(hard, pre), mean(hard, sup)) < mean(hard, best)}
            verdicts[f"aim_half_of_classic_{tag}"] = {
                "pretrained": mean(hard, pre), "half_best_classic": 0.5 * mean(hard, best),
                "held": mean(hard, pre) <= 0.5 * mean(hard, best)}
    lines.append("")
    lines.append(f"Utterance-level mean absolute azimuth error in degrees, mean ± std over {n} seed(s), test split "
                 "(unseen rooms, heads and talkers).")
    lines.append("")
    for k, v in verdicts.items():
        nums = ", ".join(f"{a} {b:.1f}" if isinstance(b, float) else f"{a} {b}" for a, b in v.items() if a != "held")
        lines.append(f"- {k}: {'HELD' if v['held'] else 'NOT HELD'} ({nums})")
    return "\n".join(lines) + "\n", {"table": table, "verdicts": verdicts}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny run to check the pipeline (minutes)")
    ap.add_argument("--out", type=Path, default=None, help="output folder (default runs/reproduce[-quick])")
    ap.add_argument("--seeds", type=int, nargs="+", default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    p = dict(QUICK if a.quick else FULL)
    if a.seeds:
        p["seeds"] = tuple(a.seeds)
    out = a.out or Path("runs/reproduce-quick" if a.quick else "runs/reproduce")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(out / "commands.log", "a") as log:
        paths = [seed_pipeline(out, s, p, a.device, a.workers, log) for s in p["seeds"]]
    results = [json.loads(Path(x).read_text()) for x in paths]
    md, js = summarise(results)
    header = (f"# binlearn reproduce ({'quick' if a.quick else 'full'}): seeds {list(p['seeds'])}, {p['clips']} clips "
              f"of {p['duration']} s, pretrain {p['pretrain_steps']} steps, finetune {p['finetune_steps']} steps\n\n")
    if a.quick:
        header += ("Quick mode checks that the pipeline runs; with a dozen test clips and a few dozen steps its numbers "
                   "and verdicts are not evidence either way.\n\n")
    (out / "summary.md").write_text(header + md)
    (out / "summary.json").write_text(json.dumps({"params": p, **js}, indent=1))
    print(header + md)
    print(f"total {time.perf_counter() - t0:.0f} s; wrote {out}/summary.md")


if __name__ == "__main__":
    main()
