"""Shared fixtures: one tiny simulated dataset per test session (a few seconds to make)."""

from __future__ import annotations

import os

import pytest

# Keep test runs predictable on small CI machines.
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """24 clips of 1 s: 16 train / 4 val / 4 test, built-in speech, random spherical heads."""
    from binlearn.simulate import SimConfig, simulate

    out = tmp_path_factory.mktemp("data") / "tiny"
    simulate(out, SimConfig(clips=24, seed=5, duration_s=1.0, splits=(0.666667, 0.166667, 0.166666),
                            listeners_per_split=(4, 2, 2), rt60_range=(0.0, 0.8)), workers=1)
    return out
