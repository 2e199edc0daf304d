"""Pretraining / fine-tuning: end to end, overfitting, label-free pretraining, --init, resume, failures."""

from __future__ import annotations

import csv
import shutil
import time

import pytest
import torch
from typer.testing import CliRunner

from binlearn.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from binlearn.cli import app
from binlearn.data import load_split
from binlearn.features import FeatureConfig, parse_kinds, target_dim
from binlearn.model import DistillModel, DoAModel, ModelConfig
from binlearn.train import DistillTask, DoATask, TrainConfig, TrainingError, finetune, pretrain

runner = CliRunner()
TINY = ModelConfig(conv_channels=(8, 16, 16), gru_hidden=24, embed_dim=24, head_hidden=24, dropout=0.0)


def test_tiny_end_to_end_cli_under_a_minute(tmp_path):
    t0 = time.perf_counter()
    data = tmp_path / "data"
    ok = lambda res: (res.exit_code == 0) or pytest.fail(res.output)  # noqa: E731
    ok(runner.invoke(app, ["simulate", str(data), "--clips", "12", "--duration", "0.6", "--splits", "0.5,0.25,0.25", "-q"]))
    ok(runner.invoke(app, ["pretrain", str(data), "--out", str(tmp_path / "pre.pt"), "--steps", "2", "--batch-size", "4",
                           "--segment", "0.5", "-q", "--device", "cpu"]))
    ok(runner.invoke(app, ["finetune", str(data), "--out", str(tmp_path / "ft.pt"), "--init", str(tmp_path / "pre.pt"),
                           "--steps", "2", "--batch-size", "4", "--segment", "0.5", "-q"]))
    ok(runner.invoke(app, ["finetune", str(data), "--out", str(tmp_path / "sup.pt"), "--steps", "2", "--batch-size", "4",
                           "--segment", "0.5", "-q", "--label-fraction", "0.5"]))
    res = runner.invoke(app, ["evaluate", str(data), "-m", str(tmp_path / "ft.pt"), "-m", str(tmp_path / "sup.pt"),
                              "--out", str(tmp_path / "ev"), "-q", "--snrs", "inf,0"])
    ok(res)
    assert "ft" in res.stdout and "sup" in res.stdout and "gcc-phat" in res.stdout
    clip = next((data / "clips").glob("*_reverb.wav"))
    res = runner.invoke(app, ["doa", str(clip), "--model", str(tmp_path / "ft.pt"), "--json"])
    ok(res)
    assert time.perf_counter() - t0 < 60


def _fixed_batch(dataset, n=4):
    clips = load_split(dataset, "train", labels=True)
    return clips.reverb[:n], clips.clean[:n], clips.azimuth[:n]


def test_distillation_overfits_a_handful_of_clips(tiny_dataset):
    torch.manual_seed(0)
    fcfg = FeatureConfig()
    kinds = parse_kinds("gcc+ipd+ild")
    model = DistillModel(ModelConfig(**{**TINY.__dict__, "target_dim": target_dim(fcfg, kinds)}))
    task = DistillTask(fcfg, kinds, "l1")
    x, clean, _ = _fixed_batch(tiny_dataset)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(150):
        loss, _ = task.loss_fn(model, x, clean, None)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 3, (losses[0], losses[-1])


def test_doa_overfits_a_handful_of_clips(tiny_dataset):
    torch.manual_seed(0)
    model = DoAModel(TINY)
    task = DoATask(FeatureConfig(), TINY)
    x, clean, az = _fixed_batch(tiny_dataset)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(150):
        loss, extra = task.loss_fn(model, x, clean, az)
        first = first if first is not None else (loss.item(), extra["mae_deg"])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    loss, extra = task.loss_fn(model, x, clean, az)
    assert extra["mae_deg"] < 3.0 and extra["mae_deg"] < first[1] / 5, (first, extra)


def test_pretraining_never_reads_labels(tiny_dataset, tmp_path):
    """Pretraining runs on a copy of the dataset whose metadata has the direction columns removed."""
    data = tmp_path / "nolabels"
    shutil.copytree(tiny_dataset, data)
    rows = list(csv.DictReader(open(data / "metadata.csv")))
    drop = {"azimuth_deg", "elevation_deg", "interferer_azimuth_deg"}
    keep = [k for k in rows[0] if k not in drop]
    with open(data / "metadata.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keep)
        w.writeheader()
        for r in rows:
            w.writerow({k: r[k] for k in keep})
    out = tmp_path / "pre.pt"
    summary = pretrain(data, out, tcfg=TrainConfig(steps=2, batch_size=4, segment_s=0.5), mcfg=TINY, device="cpu",
                       progress=False, log=lambda m: None)
    assert summary["steps"] == 2 and out.is_file()
    # ... while fine-tuning on it says clearly that labels are needed.
    with pytest.raises(ValueError, match="azimuth_deg"):
        finetune(data, tmp_path / "ft.pt", tcfg=TrainConfig(steps=1), mcfg=TINY, progress=False, log=lambda m: None)


def test_init_copies_pretrained_encoder_exactly(tiny_dataset, tmp_path):
    pre = tmp_path / "pre.pt"
    pretrain(tiny_dataset, pre, tcfg=TrainConfig(steps=2, batch_size=4, segment_s=0.5), mcfg=TINY, device="cpu",
             progress=False, log=lambda m: None)
    enc = {k[8:]: v for k, v in load_checkpoint(pre)["state_dict"].items() if k.startswith("encoder.")}
    # lr 0: the fine-tuned checkpoint's encoder must still be the pretrained one, bit for bit.
    ft = tmp_path / "ft.pt"
    finetune(tiny_dataset, ft, init=pre, tcfg=TrainConfig(steps=1, lr=0.0, batch_size=4, segment_s=0.5), device="cpu",
             progress=False, log=lambda m: None)
    ck = load_checkpoint(ft, kind="doa")
    got = {k[8:]: v for k, v in ck["state_dict"].items() if k.startswith("encoder.")}
    assert got.keys() == enc.keys()
    for k in enc:
        if "num_batches_tracked" in k or "running_" in k:
            continue  # BatchNorm statistics update in train mode even at lr 0
        assert torch.equal(got[k], enc[k]), k
    assert not any(k.startswith("predictor.") for k in ck["state_dict"])
    # Frozen encoder: weights (and norm statistics) unchanged after real training steps.
    fz = tmp_path / "fz.pt"
    finetune(tiny_dataset, fz, init=pre, tcfg=TrainConfig(steps=3, batch_size=4, segment_s=0.5, freeze_encoder=True),
             device="cpu", progress=False, log=lambda m: None)
    got = {k[8:]: v for k, v in load_checkpoint(fz)["state_dict"].items() if k.startswith("encoder.")}
    for k in enc:
        if "num_batches_tracked" in k or "running_" in k:
            continue
        assert torch.equal(got[k], enc[k]), k


def test_same_seed_reproducible_on_cpu(tiny_dataset, tmp_path):
    kw = dict(tcfg=TrainConfig(steps=3, batch_size=4, segment_s=0.5, seed=3), mcfg=TINY, device="cpu",
              progress=False, log=lambda m: None)
    finetune(tiny_dataset, tmp_path / "a.pt", **kw)
    finetune(tiny_dataset, tmp_path / "b.pt", **kw)
    a, b = load_checkpoint(tmp_path / "a.pt")["state_dict"], load_checkpoint(tmp_path / "b.pt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_continues_to_the_same_result(tiny_dataset, tmp_path, monkeypatch):
    kw = dict(mcfg=TINY, device="cpu", progress=False, log=lambda m: None)
    tcfg = TrainConfig(epochs=3, batch_size=8, segment_s=0.5, seed=1, patience=99)
    finetune(tiny_dataset, tmp_path / "full.pt", tcfg=tcfg, **kw)

    # Interrupt after the first epoch's state is saved, then resume.
    import binlearn.train as tr

    calls = {"n": 0}
    real = tr.save_checkpoint

    def boom(path, payload):
        real(path, payload)
        if str(path).endswith(".state"):
            calls["n"] += 1
            if calls["n"] == 1:
                raise KeyboardInterrupt

    monkeypatch.setattr(tr, "save_checkpoint", boom)
    with pytest.raises(KeyboardInterrupt):
        finetune(tiny_dataset, tmp_path / "part.pt", tcfg=tcfg, **kw)
    monkeypatch.setattr(tr, "save_checkpoint", real)
    assert (tmp_path / "part.pt.state").is_file()
    finetune(tiny_dataset, tmp_path / "part.pt", tcfg=tcfg, resume=True, **kw)
    assert not (tmp_path / "part.pt.state").exists()
    a, b = load_checkpoint(tmp_path / "full.pt"), load_checkpoint(tmp_path / "part.pt")
    assert a["summary"]["steps"] == b["summary"]["steps"]
    assert all(torch.allclose(a["state_dict"][k].float(), b["state_dict"][k].float()) for k in a["state_dict"])
    with pytest.raises(TrainingError, match="nothing to resume"):
        finetune(tiny_dataset, tmp_path / "part.pt", tcfg=tcfg, resume=True, **kw)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_dataset, tmp_path, monkeypatch):
    out = tmp_path / "ft.pt"
    finetune(tiny_dataset, out, tcfg=TrainConfig(steps=2, batch_size=8, segment_s=0.5), mcfg=TINY, device="cpu",
             progress=False, log=lambda m: None)
    before = out.read_bytes()
    import binlearn.train as tr

    real = tr.DoATask.loss_fn

    def nan_loss(self, *a):
        loss, ex = real(self, *a)
        return loss * float("nan"), ex

    monkeypatch.setattr(tr.DoATask, "loss_fn", nan_loss)
    res = runner.invoke(app, ["finetune", str(tiny_dataset), "--out", str(out), "--steps", "2", "-q"])
    assert res.exit_code == 1 and "loss became nan" in res.stderr and "kept" in res.stderr
    assert out.read_bytes() == before


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # the deliberately garbage file
def test_checkpoint_errors_are_one_line(tiny_dataset, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x80\x04garbage")
    with pytest.raises(CheckpointError, match="not a readable binlearn checkpoint"):
        load_checkpoint(bad)
    res = runner.invoke(app, ["finetune", str(tiny_dataset), "--out", str(tmp_path / "x.pt"), "--init", str(bad), "-q"])
    assert res.exit_code == 1 and res.stderr.count("\n") == 1 and "bad.pt" in res.stderr
    # A DoA checkpoint given where a pretrained one is expected.
    ft = tmp_path / "ft.pt"
    finetune(tiny_dataset, ft, tcfg=TrainConfig(steps=1, batch_size=4, segment_s=0.5), mcfg=TINY, device="cpu",
             progress=False, log=lambda m: None)
    res = runner.invoke(app, ["finetune", str(tiny_dataset), "--out", str(tmp_path / "y.pt"), "--init", str(ft), "-q"])
    assert res.exit_code == 1 and "expected a pretrained" in res.stderr
    # Incompatible config (a field this version does not know).
    ck = load_checkpoint(ft)
    ck["model_config"]["wavelet_layers"] = 3
    save_checkpoint(tmp_path / "odd.pt", {k: v for k, v in ck.items() if k not in ("format", "version")})
    res = runner.invoke(app, ["doa", str(next((tiny_dataset / "clips").glob("*_clean.wav"))), "--model", str(tmp_path / "odd.pt")])
    assert res.exit_code == 1 and "incompatible ModelConfig" in res.stderr
    # Truncated checkpoint.
    (tmp_path / "trunc.pt").write_bytes(ft.read_bytes()[:1000])
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "trunc.pt")


def test_bad_training_inputs(tmp_path, tiny_dataset):
    res = runner.invoke(app, ["pretrain", str(tmp_path / "missing"), "--out", str(tmp_path / "p.pt"), "-q"])
    assert res.exit_code == 1 and "dataset folder not found" in res.stderr
    res = runner.invoke(app, ["pretrain", str(tiny_dataset), "--out", str(tmp_path / "p.pt"), "--targets", "gcc+xyz", "-q"])
    assert res.exit_code == 1 and "xyz" in res.stderr
    res = runner.invoke(app, ["finetune", str(tiny_dataset), "--out", str(tmp_path / "f.pt"), "--label-fraction", "1.5", "-q"])
    assert res.exit_code == 1 and "label-fraction" in res.stderr
    res = runner.invoke(app, ["finetune", str(tiny_dataset), "--out", str(tmp_path / "f.pt"), "--device", "cuda", "-q"])
    if not torch.cuda.is_available():
        assert res.exit_code == 1 and "no CUDA" in res.stderr


def test_label_fraction_uses_fewer_clips(tiny_dataset):
    from binlearn.data import label_subset

    clips = load_split(tiny_dataset, "train", labels=True)
    sub = label_subset(clips, 0.25, seed=0)
    assert len(sub) == 4 and len(label_subset(clips, 0.25, seed=0)) == 4
    assert sub.ids == label_subset(clips, 0.25, seed=0).ids
    assert set(sub.ids) <= set(clips.ids)


def test_early_stopping_gives_small_label_fractions_a_fair_budget(tiny_dataset, tmp_path):
    """With 1-step epochs, patience 1 must still allow 25 steps without improvement before stopping."""
    tcfg = TrainConfig(steps=60, batch_size=16, segment_s=0.5, lr=0.0, patience=1, label_fraction=0.25)
    s = finetune(tiny_dataset, tmp_path / "f.pt", tcfg=tcfg, mcfg=TINY, device="cpu", progress=False, log=lambda m: None)
    assert s["steps"] >= 26
    if s["stopped"] != "completed":
        assert "25 steps without validation improvement" in s["stopped"] or "steps without" in s["stopped"]
