"""The run contract: where every artifact of a run lives, and what summary.json and the export record hold.

A training run's output directory is the unit every package passes around. `RunDir` is the
only place that names its files; `TrainSummary` (with `EpochRecord`, `RankRecord`, ...) is the
only reader and writer of summary.json: typed, versioned like bench results (schema +
version), refused with one line when it is from a newer version or malformed.

    run = RunDir("runs/alexnet")
    run.model, run.summary, run.checkpoint, run.progress, run.onnx, run.variant("int8"), run.bench("sweep")
    summary = run.read_summary()            # TrainSummary
    summary.test_accuracy, summary.dataset, summary.epochs[-1].val_accuracy
    RunDir.of("runs/alexnet/alexnet.onnx")  # the run a file belongs to

summary.json (schema "alexnet-toolkit/train-summary", version 1):
    {"schema", "version", "created", "test_accuracy", "test_loss", "test_images", "world_size",
     "precision", "allreduce", "parameters", "steps_per_epoch", "images_trained",
     "throughput": {"images_per_second" (total over ranks), "interval_images_per_second": [...],
                    "warmup_steps", "log_every", "global_batch"},
     "epochs": [{"epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate",
                 "images_per_second", "seconds", "resumed_at_step"}],
     "ranks": [{"rank", "hostname", "device", "images", "indices_sha256_63", "first_index",
                "weights_sha256_63"}],
     "class_names": [...], "input": {"shape", "dtype", "preprocessing"},
     "config": {every training option, resolved}, "environment": {host, CPU, GPUs, versions},
     "resets": [{"epoch", "reason", "ranks_before", "ranks_after", "hosts", "failed_at", "resumed_at",
                 "rolled_back_images", "lost_images", "repeated_images", "seconds"}]   (elastic runs)}

The export's record, OUT.onnx.json beside every export (`ExportRecord`, with `ExportResult`,
`ExportedFile` and `Comparison`; written by export/pipeline.py, read by `bench report`):

    record = ExportRecord.read(run.export_record)     # or record.write(export_record_path(out))
    record.export.opset, [(f.variant, f.size_bytes, f.vs_keras.max_abs_diff) for f in record.files]

OUT.onnx.json (schema "alexnet-toolkit/export-record", version 2):
    {"schema", "version", "config": {every export option, resolved}, "verification_inputs": "64 ... images",
     "export": {"path", "opset", "method", "input_name", "output_name", "input_dtype", "input_shape",
                "layout", "preprocessing", "size_bytes", "seconds", "metadata", "fallback_reason",
                "source_sha256", "timings", "rewrites" (export.rewrite passes run: times each applied)},
     "files": [{"path", "variant", "vs_keras": COMPARISON, "vs_float32": COMPARISON | null,
                "size_bytes", "providers", "sha256"}],
     "seconds", "environment": {host, CPU, GPUs, versions}}
    COMPARISON = {"candidate", "reference", "samples", "max_abs_diff", "top1_agreement"}
Records written before the schema was added carry neither "schema" nor "version" (and leave
out a null "vs_float32"); their fields are version 1's, and they are read as such.
Versions: 2 added files[].sha256: `ExportRecord.read` (and `check_exported_file`, which bench runs on
every model it opens) refuses a file whose bytes differ from the record's, or a missing one, so a
re-export killed half-way is refused rather than read as a mix of two exports (version 1 records
name no hashes: nothing to check).
"""
from __future__ import annotations

import dataclasses
import datetime
import functools
import os
import types
import typing
from pathlib import Path
from typing import Any

from toolkit.cli import CheckFailed, UsageError
from toolkit.files import read_json, schema_version, sha256_file, write_json_atomic

SUMMARY_SCHEMA = "alexnet-toolkit/train-summary"
SUMMARY_VERSION = 1
EXPORT_SCHEMA = "alexnet-toolkit/export-record"
EXPORT_VERSION = 2
VARIANTS = ("float16", "int8")


def now_utc() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _kind(value: Any) -> str:
    """A JSON value's type as the file's author would name it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    return {int: "a number", float: "a number", str: "a string", list: "a list", dict: "an object"}.get(
        type(value), type(value).__name__)


@functools.cache
def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def decode(cls, obj: Any, where: str = ""):
    """Build dataclass `cls` from its JSON form, every value checked against its field's type hint: nested
    dataclasses, tuples (of any length, or fixed), dicts, unions and Optional included. A missing required
    field is a KeyError, a value of the wrong type a TypeError naming where it is (`rows[2].latency.mean`);
    keys the class does not have are ignored (fields a reader derives). An instance of `cls` passes as it is:
    a reader that rebuilds part of a document itself hands that part over built."""
    where = where or cls.__name__
    if isinstance(obj, cls):
        return obj
    if not isinstance(obj, dict):
        raise TypeError(f"{where} must be a JSON object, got {_kind(obj)}")
    hints = _hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.name not in obj:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise KeyError(f.name)
            continue
        values[f.name] = decode_value(hints[f.name], obj[f.name], f"{where}.{f.name}")
    return cls(**values)


def decode_value(hint: Any, value: Any, where: str) -> Any:
    """One JSON value as type `hint` (see `decode`); TypeError naming `where` when it is not one."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if dataclasses.is_dataclass(hint):
        return decode(hint, value, where)
    if origin in (typing.Union, types.UnionType):
        return _union(args, value, where)
    if origin is tuple:
        return _sequence(args, value, where)
    if origin is list:
        return list(_sequence((args[0], Ellipsis), value, where))
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise TypeError(f"{where} must be a JSON object, got {_kind(value)}")
        item = args[1] if args else Any
        return {k: decode_value(item, v, f"{where}[{k!r}]") for k, v in value.items()}
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            raise TypeError(f"{where} is a number too large for a float") from None
    if hint in (int, str, bool) and type(value) is hint:
        return value
    if hint not in (int, float, str, bool) and isinstance(hint, type) and isinstance(value, hint):
        return value
    raise TypeError(f"{where} must be {getattr(hint, '__name__', hint)}, got {_kind(value)}")


def _union(args: tuple, value: Any, where: str) -> Any:
    if value is None and type(None) in args:
        return None
    options = [a for a in args if a is not type(None)]
    for option in options[:-1]:
        try:
            return decode_value(option, value, where)
        except TypeError:
            continue
    return decode_value(options[-1], value, where)


def _sequence(args: tuple, value: Any, where: str) -> tuple:
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{where} must be a list, got {_kind(value)}")
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(decode_value(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
    if len(value) != len(args):
        raise TypeError(f"{where} must hold {len(args)} values, got {len(value)}")
    return tuple(decode_value(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))


def to_json(obj) -> dict[str, Any]:
    """A dataclass as plain JSON values (tuples become lists when dumped)."""
    return dataclasses.asdict(obj)


def _versioned(cls, doc: Any, source: str, *, schema: str, version: int, what: str, fix: str):
    """Build `cls` from a versioned document: one line naming the problem when it is not one this reads."""
    schema_version(doc, schema, version, source, what, fix)
    try:
        return decode(cls, {k: v for k, v in doc.items() if k not in ("schema", "version")})
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"{source} is a malformed {what} ({type(exc).__name__}: {exc}): {fix}") from None


@dataclasses.dataclass(frozen=True)
class EpochRecord:
    """One epoch as the chief logged it: metrics summed exactly over ranks."""

    epoch: int                       # 1-based
    loss: float
    accuracy: float
    val_loss: float
    val_accuracy: float
    learning_rate: float
    images_per_second: float         # over all ranks, this epoch's training steps only
    seconds: float
    resumed_at_step: int | None = None


@dataclasses.dataclass(frozen=True)
class RankRecord:
    """Where one rank ran and what it held: its shard of the training set, its final weights."""

    rank: int
    hostname: str
    device: str                      # e.g. "CPU" or "GPU:0 (NVIDIA H100 80GB HBM3)"
    images: int                      # training images in its shard
    indices_sha256_63: int           # digest of its shard's indices (disjointness is checkable)
    first_index: int
    weights_sha256_63: int           # digest of its trainable weights at the end: equal iff bit-identical


@dataclasses.dataclass(frozen=True)
class ElasticReset:
    """One change of an elastic run's world: a rank lost (the others rolled back to their last
    commit) or hosts added or removed (at a commit, nothing rolled back)."""

    epoch: int                       # 1-based, the epoch it happened in
    reason: str                      # "rank lost" or "hosts changed"
    ranks_before: int
    ranks_after: int
    hosts: tuple[str, ...]           # of the ranks after, in rank order
    failed_at: int                   # images of the epoch trained (all ranks) when it happened
    resumed_at: int                  # ... where the new world went on: the last commit
    rolled_back_images: int          # trained since that commit, undone and trained again
    lost_images: int                 # of the epoch's order before resumed_at, trained by no kept step
    repeated_images: int             # trained by more than one kept step
    seconds: float                   # from the last step before it to the first step after


@dataclasses.dataclass(frozen=True)
class TrainThroughput:
    """Training images/s over all ranks, measured after warm-up in intervals of `log_every` steps."""

    images_per_second: float | None  # None: too few steps after warm-up to measure
    interval_images_per_second: tuple[float, ...]
    warmup_steps: int
    log_every: int
    global_batch: int

    def per_rank(self, world_size: int) -> float | None:
        return None if self.images_per_second is None else self.images_per_second / world_size


@dataclasses.dataclass(frozen=True)
class ModelInput:
    shape: tuple[int | None, ...]
    dtype: str
    preprocessing: str


@dataclasses.dataclass(frozen=True)
class TrainSummary:
    """summary.json: the result of a training run (see the module docstring for the JSON)."""

    test_accuracy: float
    test_loss: float
    test_images: int
    world_size: int
    precision: str                   # the resolved Keras policy, e.g. mixed_bfloat16
    allreduce: str                   # how gradients crossed ranks: "gloo", "nccl", "mpi" or "none"
    parameters: int
    steps_per_epoch: int
    images_trained: int
    throughput: TrainThroughput
    epochs: tuple[EpochRecord, ...]
    ranks: tuple[RankRecord, ...]
    class_names: tuple[str, ...]
    input: ModelInput
    config: dict[str, Any]
    environment: dict[str, Any]
    created: str = dataclasses.field(default_factory=now_utc)
    resets: tuple[ElasticReset, ...] = ()    # elastic runs: every change of the world, in order

    @property
    def dataset(self) -> str | None:
        return self.config.get("dataset")

    @property
    def batch_size(self) -> int:
        """Per rank."""
        return int(self.config["batch_size"])

    @property
    def images_per_second(self) -> float | None:
        return self.throughput.images_per_second

    def to_json(self) -> dict[str, Any]:
        return {"schema": SUMMARY_SCHEMA, "version": SUMMARY_VERSION, **to_json(self)}

    @classmethod
    def from_json(cls, doc: Any, source: str = "summary") -> "TrainSummary":
        return _versioned(cls, doc, source, schema=SUMMARY_SCHEMA, version=SUMMARY_VERSION, what="training summary",
                          fix="re-run the training job that wrote it with this version")


@dataclasses.dataclass(frozen=True)
class Comparison:
    """How far `candidate` (a file) is from `reference` ("keras" or another file) on the same inputs."""

    candidate: str
    reference: str
    samples: int
    max_abs_diff: float
    top1_agreement: float

    def require(self, *, max_abs_diff: float | None = None, min_agreement: float | None = None) -> None:
        """CheckFailed, naming the numbers and the option to change, when outside the given limits."""
        if max_abs_diff is not None and not self.max_abs_diff <= max_abs_diff:
            raise CheckFailed(f"{self.candidate}: max |difference| from {self.reference} is {self.max_abs_diff:.3g}, "
                              f"over the tolerance {max_abs_diff:g} ({self.samples} inputs)")
        if min_agreement is not None and not self.top1_agreement >= min_agreement:
            raise CheckFailed(f"{self.candidate}: top-1 agreement with {self.reference} is {self.top1_agreement:.2%}, "
                              f"under the required {min_agreement:.2%} ({self.samples} inputs)")

    def to_json(self) -> dict[str, Any]:
        return to_json(self)


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """What an export wrote, and how: enough to verify it and to reproduce it."""

    path: str
    opset: int
    method: str                       # "fast" or "stock"
    input_name: str
    output_name: str
    input_dtype: str
    input_shape: list[Any]            # as the ONNX input declares it ("batch" first)
    layout: str                       # "NHWC" or "NCHW" (of the ONNX input)
    preprocessing: str                # what the input must be
    size_bytes: int
    seconds: float
    metadata: dict[str, str]
    fallback_reason: str | None = None
    source_sha256: str | None = None
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    rewrites: dict[str, int] = dataclasses.field(default_factory=dict)  # export.rewrite passes run: times applied

    @property
    def nchw(self) -> bool:
        return self.layout == "NCHW"


@dataclasses.dataclass(frozen=True)
class ExportedFile:
    """One file the export wrote (the float32 model or a variant), and how it compared."""

    path: str
    variant: str                      # "float32", or one of VARIANTS
    vs_keras: Comparison
    size_bytes: int
    providers: tuple[str, ...]        # the onnxruntime providers it loads in
    vs_float32: Comparison | None = None   # variants only: top-1 agreement with the float32 file
    sha256: str | None = None         # the file's bytes (version 2 on): what readers check it against

    @property
    def name(self) -> str:
        return Path(self.path).name


@dataclasses.dataclass(frozen=True)
class ExportRecord:
    """OUT.onnx.json: the record of an export (see the module docstring for the JSON)."""

    config: dict[str, Any]
    verification_inputs: str          # what the comparisons ran on, e.g. "256 fashion_mnist test images"
    export: ExportResult
    files: tuple[ExportedFile, ...]
    seconds: float
    environment: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"schema": EXPORT_SCHEMA, "version": EXPORT_VERSION, **to_json(self)}

    @classmethod
    def from_json(cls, doc: Any, source: str = "export record") -> "ExportRecord":
        if isinstance(doc, dict) and "schema" not in doc and "version" not in doc:
            doc = {"schema": EXPORT_SCHEMA, "version": 1, **doc}  # written before records had a schema
        return _versioned(cls, doc, source, schema=EXPORT_SCHEMA, version=EXPORT_VERSION, what="export record",
                          fix="re-export the model (python -m export MODEL.keras -o OUT.onnx)")

    @classmethod
    def read(cls, path: str | os.PathLike) -> "ExportRecord":
        """The record beside its files, after `check_files`."""
        fix = "export first (python -m export MODEL.keras -o OUT.onnx), which writes OUT.onnx.json"
        record = cls.from_json(read_json(path, "export record", fix), str(path))
        record.check_files(Path(path))
        return record

    def check_files(self, path: Path) -> None:
        """UsageError unless every file the record (at `path`) names lies beside it with the sha256 it names:
        what a re-export killed half-way leaves (some files new, some old) must not pass for one export."""
        fix = f"re-export (python -m export MODEL.keras -o {Path(self.export.path).name}) to write a whole set"
        for entry in self.files:
            if entry.sha256 is None:
                continue  # version 1: no hash to check
            file = path.parent / entry.name
            if not file.is_file():
                raise UsageError(f"{file}, a file of the export recorded in {path}, is missing: {fix}")
            if _sha256(file) != entry.sha256:
                raise UsageError(f"{file} is not the file recorded in {path} (its sha256 differs: an export was "
                                 f"interrupted or the file replaced): {fix}")

    def write(self, path: str | os.PathLike) -> None:
        write_json_atomic(path, self.to_json())


@dataclasses.dataclass(frozen=True)
class TrainProgress:
    """progress.json: where the chief is, for whoever watches a run from outside (a SLURM user,
    a test that must signal at a given step, a dashboard). Rewritten atomically during training."""

    epoch: int                       # 1-based, the epoch in progress
    epochs: int
    step: int                        # steps done in this epoch
    steps_per_epoch: int
    images_trained: int              # over all ranks, since the run's first start
    loss: float                      # this epoch's running means
    accuracy: float
    updated: str = dataclasses.field(default_factory=now_utc)

    def to_json(self) -> dict[str, Any]:
        return to_json(self)


def variant_path(onnx_path: str | os.PathLike, variant: str) -> Path:
    """alexnet.onnx -> alexnet.float16.onnx: where the export writes a variant of a model."""
    path = Path(onnx_path)
    return path.with_name(f"{path.stem}.{variant}{path.suffix or '.onnx'}")


def export_record_path(onnx_path: str | os.PathLike) -> Path:
    """alexnet.onnx -> alexnet.onnx.json: the export's record (settings, machine, every comparison)."""
    path = Path(onnx_path)
    return path.with_name(path.name + ".json")


# sha256 per file version (path, inode, size, mtime): bench opens one model many times in a process.
_SHA256: dict[tuple, str] = {}


def _sha256(path: Path) -> str:
    status = path.stat()
    key = (str(path.resolve()), status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)
    if key not in _SHA256:
        _SHA256[key] = sha256_file(path)
    return _SHA256[key]


def check_exported_file(path: str | os.PathLike) -> None:
    """Where `path` belongs to an export (OUT.onnx or OUT.VARIANT.onnx with OUT.onnx.json beside it),
    UsageError unless that record names it and every file of the set matches (`ExportRecord.check_files`)."""
    path = Path(path)
    stem = path.name.removesuffix(".onnx")
    owners = [path, *(path.with_name(stem.removesuffix(f".{v}") + ".onnx") for v in VARIANTS if stem.endswith(f".{v}"))]
    record_path = next((export_record_path(p) for p in owners if export_record_path(p).is_file()), None)
    if record_path is None:
        return
    record = ExportRecord.read(record_path)
    if path.name not in {entry.name for entry in record.files}:
        raise UsageError(f"{path} is not a file of the export recorded in {record_path} (left from an older "
                         f"export?): remove it, or re-export to {record_path.name.removesuffix('.json')}")


@dataclasses.dataclass(frozen=True)
class RunDir:
    """A run's output directory; every artifact's name is decided here and nowhere else."""

    root: Path

    def __init__(self, root: str | os.PathLike):
        object.__setattr__(self, "root", Path(root))

    @classmethod
    def of(cls, artifact: str | os.PathLike) -> "RunDir":
        """The run a file (model.keras, alexnet.onnx, ...) belongs to: its directory."""
        return cls(Path(artifact).parent)

    # ---- training
    @property
    def model(self) -> Path:
        return self.root / "model.keras"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def checkpoint(self) -> Path:
        return self.root / "checkpoint.npz"

    @property
    def progress(self) -> Path:
        """Where the chief is (epoch, step, images so far), rewritten atomically during training."""
        return self.root / "progress.json"

    @property
    def samples(self) -> Path:
        return self.root / "samples.png"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    # ---- export
    @property
    def onnx(self) -> Path:
        return self.root / "alexnet.onnx"

    def variant(self, variant: str) -> Path:
        return variant_path(self.onnx, variant)

    @property
    def export_record(self) -> Path:
        return export_record_path(self.onnx)

    # ---- benchmarks and the report
    def bench(self, name: str) -> Path:
        return self.root / f"bench-{name}.json"

    @property
    def report_md(self) -> Path:
        return self.root / "report.md"

    @property
    def report_html(self) -> Path:
        return self.root / "report.html"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    # ---- reading and writing the summary
    def read_summary(self) -> TrainSummary:
        fix = "train first (python -m alexnet.train --output-dir DIR) or pass the run directory it wrote"
        return TrainSummary.from_json(read_json(self.summary, "training summary", fix), str(self.summary))

    def summary_if_any(self) -> TrainSummary | None:
        """The summary when there is a readable one (a model file may travel without its run)."""
        if not self.summary.is_file():
            return None
        try:
            return self.read_summary()
        except UsageError:
            return None

    def write_summary(self, summary: TrainSummary) -> None:
        write_json_atomic(self.summary, summary.to_json())

    def write_progress(self, progress: TrainProgress) -> None:
        write_json_atomic(self.progress, progress.to_json())

    def read_progress(self) -> TrainProgress | None:
        """The last progress written, or None before the first (or for a file being replaced)."""
        try:
            return decode(TrainProgress, read_json(self.progress, "progress file", "wait for training to start"))
        except (UsageError, KeyError, TypeError):
            return None
