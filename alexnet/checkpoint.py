"""Training checkpoints: one `.npz` file, written atomically, that `--resume` continues from.

It holds every model variable (weights, BatchNorm statistics, dropout RNG state), every
optimizer variable (slots, iteration count, loss scale) and the loop's position
(epoch, step within it, partial metric sums, history), so a resumed run continues
exactly where the interrupted one stopped. Variables are matched by path and shape:
a checkpoint from another architecture is refused with a clear error, never half-loaded.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from toolkit.cli import UsageError
from toolkit.files import atomic_path

FORMAT_VERSION = 1
FILENAME = "checkpoint.npz"


def _describe(variables) -> list[list]:
    return [[v.path, list(v.shape), str(v.dtype)] for v in variables]


def save(path: str | Path, model, optimizer, state: dict) -> None:
    arrays = {f"model_{i}": np.asarray(v.numpy()) for i, v in enumerate(model.variables)}
    arrays.update({f"optimizer_{i}": np.asarray(v.numpy()) for i, v in enumerate(optimizer.variables)})
    meta = {"format": FORMAT_VERSION, "model": _describe(model.variables),
            "optimizer": _describe(optimizer.variables), "state": state}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def read_meta(path: str | Path) -> tuple[dict, dict]:
    """Read the file: (meta, arrays). Corrupt or foreign files are a UsageError."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        meta = json.loads(arrays.pop("meta").tobytes())
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise UsageError(f"{path} is not a readable checkpoint ({type(exc).__name__}): "
                         f"delete it to start afresh, or resume from another --output-dir") from None
    if meta.get("format") != FORMAT_VERSION:
        raise UsageError(f"{path} has checkpoint format {meta.get('format')}, this version reads "
                         f"{FORMAT_VERSION}: resume with the version that wrote it")
    return meta, arrays


def load(path: str | Path, model, optimizer) -> dict:
    """Restore model and optimizer variables in place; return the saved loop state."""
    meta, arrays = read_meta(path)
    for kind, variables in (("model", model.variables), ("optimizer", optimizer.variables)):
        expected = _describe(variables)
        if meta[kind] != expected:
            diff = next((f"{a[0]} {a[1]} vs {b[0]} {b[1]}" for a, b in zip(meta[kind], expected) if a != b),
                        f"{len(meta[kind])} vs {len(expected)} variables")
            raise UsageError(f"{path} was written for a different {kind} ({diff}): resume with the same "
                             f"--image-size/--norm/--dataset/--optimizer/--precision, or use a new --output-dir")
    for prefix, variables in (("model", model.variables), ("optimizer", optimizer.variables)):
        for i, var in enumerate(variables):
            var.assign(arrays[f"{prefix}_{i}"])
    return meta["state"]
