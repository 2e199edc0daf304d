"""Multi-process training through torchrun (gloo on CPU here; NCCL on GPUs). Slow: run with `pytest -m slow`."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import torch

from binlearn.checkpoint import load_checkpoint


@pytest.mark.slow
def test_torchrun_two_processes_finetune(tiny_dataset, tmp_path):
    torchrun = shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun not on PATH")
    out = tmp_path / "ddp.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "binlearn", "finetune", str(tiny_dataset),
           "--out", str(out), "--steps", "2", "--batch-size", "4", "--segment", "0.5", "--device", "cpu", "-q"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    ck = load_checkpoint(out, kind="doa")
    assert ck["summary"]["steps"] == 2
    assert all(torch.isfinite(v.float()).all() for v in ck["state_dict"].values())
    assert not (tmp_path / "ddp.pt.state").exists()
