"""Training checkpoints: one `.npz` file, written atomically, that `--resume` continues from.

It holds every model variable (weights, BatchNorm statistics, dropout RNG state), every
optimizer variable (slots, iteration count, loss scale), the loop's position (`LoopState`:
epoch, step within it, partial metric sums, history) and how the epoch's images were dealt to
ranks (`alexnet.data.Dealing`), so a resumed run continues exactly where the interrupted one
stopped, or is refused where it could not (another world, batch size, seed or data mode
mid-epoch would skip and repeat images). Variables are matched by path and shape: a checkpoint
from another architecture is refused with a clear error, never half-loaded.

    save(path, model, optimizer, state, dealing)
    saved = open_checkpoint(path)          # the metadata only, validated: saved.state, saved.dealing
    saved.restore(model, optimizer)        # the arrays, each header checked before it is read
    meta, arrays = read_meta(path)         # everything, for inspection (tests)

Nothing in the file is trusted: the metadata is decoded against its types, and every array's
`.npy` header is read and checked (against the metadata, the model, and the bytes the file
really holds) before the array is, so a crafted header cannot make it allocate what it claims.
Every defect is one UsageError line.

Format 2 added `dealing`. A format 1 file still loads at an epoch's end; stopped mid-epoch it is
refused, since it does not say how that epoch was dealt.
"""
from __future__ import annotations

import dataclasses
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from alexnet.data import Dealing
from toolkit.cli import UsageError
from toolkit.files import atomic_path
from toolkit.runs import decode

FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
FILENAME = "checkpoint.npz"
# The metadata is a few kB per epoch of history; anything near this is not one of ours.
MAX_META_BYTES = 64 << 20
Description = tuple[str, tuple[int, ...], str]    # a variable's path, shape and dtype


@dataclasses.dataclass(frozen=True)
class LoopState:
    """Where the loop stands: what a checkpoint holds besides the variables, so --resume continues
    exactly (same batches, same partial metrics, same history)."""

    epoch: int = 0                                  # epochs finished
    step: int = 0                                   # steps finished in the epoch under way
    sums: tuple[float, float, float] = (0.0, 0.0, 0.0)  # those steps' (loss x images, correct, images), all ranks
    history: tuple[dict, ...] = ()                  # each finished epoch's EpochRecord, as JSON
    images_seen: int = 0                            # trained on, all ranks, since the first run started
    position: int = 0                               # images of the epoch under way trained, all ranks
    # --elastic: (start, end, ranks) of the epoch's spans trained by one world, and every reset so far
    # (ElasticReset as JSON); a world of any size continues the epoch from `position`.
    segments: tuple[tuple[int, int, int], ...] = ()
    resets: tuple[dict, ...] = ()

    def __post_init__(self):
        counts = {"epoch": self.epoch, "step": self.step, "images_seen": self.images_seen, "position": self.position}
        negative = [name for name, value in counts.items() if value < 0]
        if negative:
            raise ValueError(f"{', '.join(negative)} must not be negative")

    @property
    def started(self) -> bool:
        return bool(self.epoch or self.step)

    @property
    def mid_epoch(self) -> bool:
        """Stopped inside an epoch: its first images are trained, the rest are not."""
        return bool(self.step or self.position)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    def advanced(self, images: int, ranks: int) -> "LoopState":
        """After one more step of `images` (all ranks) trained by a world of `ranks`."""
        start, end = self.position, self.position + images
        last = self.segments[-1] if self.segments else None
        if last is not None and last[1:] == (start, ranks):
            segments = self.segments[:-1] + ((last[0], end, ranks),)
        else:
            segments = self.segments + ((start, end, ranks),)
        return dataclasses.replace(self, step=self.step + 1, position=end, images_seen=self.images_seen + images,
                                   segments=segments)


@dataclasses.dataclass(frozen=True)
class Meta:
    """The checkpoint's `meta` member, as JSON."""

    format: int
    model: tuple[Description, ...]
    optimizer: tuple[Description, ...]
    state: LoopState
    dealing: Dealing | None = None                  # format 2 on


def _describe(variables) -> tuple[Description, ...]:
    return tuple((v.path, tuple(int(d) for d in v.shape), str(v.dtype)) for v in variables)


def save(path: str | Path, model, optimizer, state: LoopState, dealing: Dealing) -> None:
    arrays = {f"model_{i}": np.asarray(v.numpy()) for i, v in enumerate(model.variables)}
    arrays.update({f"optimizer_{i}": np.asarray(v.numpy()) for i, v in enumerate(optimizer.variables)})
    meta = Meta(FORMAT_VERSION, _describe(model.variables), _describe(optimizer.variables), state, dealing)
    arrays["meta"] = np.frombuffer(json.dumps(dataclasses.asdict(meta)).encode(), np.uint8)
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, allow_pickle=False, **arrays)


class _Refused(Exception):
    """What is wrong with the file, said in `_refusal`'s one line."""


def _header(zf: zipfile.ZipFile, name: str, claimed: Description | None = None) -> zipfile.ZipInfo:
    """The member `name`.npy, after checking that its header describes exactly the bytes stored
    (and, given `claimed`, that variable's shape and dtype): nothing of its data is read here."""
    try:
        info = zf.getinfo(f"{name}.npy")
    except KeyError:
        raise _Refused(f"it has no array {name!r}") from None
    if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
        raise _Refused(f"array {name!r} is compressed (alexnet.train never writes that)")
    with zf.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version not in ((1, 0), (2, 0)):
            raise _Refused(f"array {name!r} has .npy format {version}")
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _fortran, dtype = read(f)
        header_bytes = f.tell()
    if dtype.hasobject:
        raise _Refused(f"array {name!r} holds Python objects")
    if claimed is not None and (shape != claimed[1] or dtype != np.dtype(claimed[2])):
        raise _Refused(f"array {name!r} is {dtype}{list(shape)}, "
                       f"its variable {claimed[0]} {claimed[2]}{list(claimed[1])}")
    if header_bytes + int(np.prod(shape, dtype=object)) * dtype.itemsize != info.file_size:
        raise _Refused(f"array {name!r} claims {dtype}{list(shape)} but holds {info.file_size} bytes")
    return info


def _read(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    with zf.open(info) as f:
        return np.lib.format.read_array(f, allow_pickle=False)


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """A checkpoint file's validated metadata; `restore` reads its arrays."""

    path: Path
    meta: Meta

    @property
    def state(self) -> LoopState:
        return self.meta.state

    @property
    def dealing(self) -> Dealing | None:
        return self.meta.dealing

    def _members(self) -> list[tuple[str, Description]]:
        return ([(f"model_{i}", d) for i, d in enumerate(self.meta.model)]
                + [(f"optimizer_{i}", d) for i, d in enumerate(self.meta.optimizer)])

    def arrays(self) -> dict[str, np.ndarray]:
        """Every variable's array by member name (model_0, ..., optimizer_0, ...), each checked first."""
        with _open(self.path) as zf:
            try:
                infos = {name: _header(zf, name, claimed) for name, claimed in self._members()}
                if sum(i.file_size for i in infos.values()) > os.path.getsize(self.path):
                    raise _Refused("its arrays claim more bytes than the file holds")
                return {name: _read(zf, info) for name, info in infos.items()}
            except (_Refused, TypeError) as exc:
                raise _refusal(self.path, str(exc)) from None
            except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
                raise _refusal(self.path, f"{type(exc).__name__}: {exc}") from None

    def restore(self, model, optimizer) -> None:
        """Assign every model and optimizer variable from the file, after checking that the file
        describes exactly these variables (so no array is read that the model would not take)."""
        for kind, variables in (("model", model.variables), ("optimizer", optimizer.variables)):
            saved, expected = getattr(self.meta, kind), _describe(variables)
            if saved != expected:
                diff = next((f"{a[0]} {list(a[1])} vs {b[0]} {list(b[1])}" for a, b in zip(saved, expected) if a != b),
                            f"{len(saved)} vs {len(expected)} variables")
                raise UsageError(f"{self.path} was written for a different {kind} ({diff}): resume with the same "
                                 f"--image-size/--norm/--dataset/--optimizer/--precision, or use a new --output-dir")
        arrays = self.arrays()
        for prefix, variables in (("model", model.variables), ("optimizer", optimizer.variables)):
            for i, var in enumerate(variables):
                var.assign(arrays[f"{prefix}_{i}"])


def _refusal(path: Path, problem: str) -> UsageError:
    return UsageError(f"{path} is not a usable checkpoint ({problem}): delete it to start afresh, "
                      f"or resume from another --output-dir")


def _open(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise _refusal(path, str(exc)) from None


def _decode_meta(path: Path, raw: bytes) -> Meta:
    obj: Any = json.loads(raw)
    if not isinstance(obj, dict):
        raise _Refused(f"its metadata is {type(obj).__name__}, not an object")
    if obj.get("format") not in READABLE_FORMATS:
        raise UsageError(f"{path} has checkpoint format {obj.get('format')!r}, this version reads "
                         f"{', '.join(map(str, READABLE_FORMATS))}: resume with the version that wrote it")
    return decode(Meta, obj, "meta")


def open_checkpoint(path: str | Path) -> Checkpoint:
    """The file's metadata, validated; no variable's array is read. Anything wrong is a UsageError."""
    path = Path(path)
    with _open(path) as zf:
        try:
            return Checkpoint(path, _decode_meta(path, _read(zf, _bounded_meta(zf)).tobytes()))
        except _Refused as exc:
            raise _refusal(path, str(exc)) from None
        except (KeyError, TypeError, ValueError, RecursionError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise _refusal(path, f"bad metadata, {type(exc).__name__}: {exc}") from None


def _bounded_meta(zf: zipfile.ZipFile) -> zipfile.ZipInfo:
    info = _header(zf, "meta")
    if info.file_size > MAX_META_BYTES:
        raise _Refused(f"its metadata claims {info.file_size} bytes")
    return info


def read_meta(path: str | Path) -> tuple[dict, dict[str, np.ndarray]]:
    """(metadata as JSON, every array by member name): for inspecting a checkpoint."""
    saved = open_checkpoint(path)
    return json.loads(json.dumps(dataclasses.asdict(saved.meta))), saved.arrays()
