"""Checkpoints: one ``.pt`` file holding weights, configs, azimuth grid, version and training state.

Written atomically (temp file + rename) so an interrupted write never replaces a good checkpoint.
Loading validates the file and its configs and raises :class:`CheckpointError` with a one-line message.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from . import __version__

FORMAT = "binlearn-checkpoint-1"
KINDS = ("distill", "doa")


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, or incompatible with what it is used for."""


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Atomically write ``payload`` (plus format tag and binlearn version) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"format": FORMAT, "version": __version__, **payload}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp files are owner-only; checkpoints are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | os.PathLike, kind: str | None = None) -> dict[str, Any]:
    """Load and validate a checkpoint; ``kind`` ("distill" or "doa") is checked when given."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        # weights_only keeps loading safe: checkpoints hold only tensors and plain Python containers.
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for truncated/garbage files
        raise CheckpointError(f"{path}: not a readable binlearn checkpoint ({type(e).__name__})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a binlearn checkpoint (missing format tag {FORMAT!r})")
    for key in ("kind", "model_config", "feature_config", "state_dict"):
        if key not in data:
            raise CheckpointError(f"{path}: checkpoint is missing '{key}'")
    if data["kind"] not in KINDS:
        raise CheckpointError(f"{path}: unknown checkpoint kind {data['kind']!r}")
    if kind is not None and data["kind"] != kind:
        want = {"distill": "a pretrained (binlearn pretrain)", "doa": "a DoA (binlearn finetune)"}[kind]
        raise CheckpointError(f"{path}: expected {want} checkpoint, got kind {data['kind']!r}")
    return data


def config_from_dict(cls, d: dict[str, Any], where: str = "checkpoint"):
    """Rebuild a dataclass config, rejecting unknown fields (an incompatible checkpoint) clearly."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise CheckpointError(f"{where}: incompatible {cls.__name__} (unknown fields {', '.join(unknown)})")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in d:
            v = d[f.name]
            # tuples come back as lists from some paths; keep the dataclass's own type.
            kwargs[f.name] = tuple(v) if isinstance(v, list) else v
    return cls(**kwargs)
