"""Benchmark results: pure dataclasses, their JSON form, and a loader that refuses what it cannot read.

Every number a user quotes comes from here: `Latency.from_values` (per-iteration times in
milliseconds -> mean, stdev, min, p50, p90, p95, p99, max) and `Throughput.from_latency`
(batch / mean iteration time). The raw per-iteration times are kept in the JSON so runs can
be merged and re-analysed later.

JSON schema (version 3), written by `bench ... --json PATH`:

    {
      "schema": "alexnet-toolkit/bench", "version": 3,
      "kind": "throughput" | "latency" | "sweep" | "compare" | "overhead" | "train" | "peak",
      "created": ISO-8601 UTC,
      "model": {"path", "inputs": [{"name", "dtype", "shape"}]} | null,
      "requested_providers": ["cpu", ...],    # what the user asked for
      "providers": ["CPUExecutionProvider"],  # what the session really ran on
      "fallback": "CUDA unavailable, ran on CPU" | null,
      "throughput": samples/s,                # throughput and latency runs
      "latency_ms": {"count", "mean", "stdev", "min", "p50", "p90", "p95", "p99", "max"},  # idem
      "rows": [{"label", "engine", "model", "batch", "providers",
                "latency_ms": {...}, "throughput": {"samples_per_second", "batch", "iterations",
                "seconds"}, "times_ms": [raw per-iteration times], "ratio": float | null,
                "ops_per_sample": 2 x multiply-adds counted from the graph (bench/opcount.py) | null,
                "precision": "float32" | "int8" | null, "gop_per_s": achieved | null,
                "peak_gop_per_s": the measured peak of that precision | null, "peak_fraction": float | null}],
      "peak": {"rates": {"float32": GOP/s, "int8": GOP/s}, "source", "created", "cpu", "intra_op_threads"}
              | null,                       # the `bench peak` result the rows are compared with
      "train": [{"np", "total": SPREAD, "per_rank": SPREAD, "efficiency",
                 "intervals": [total img/s per interval]}],                 # kind "train"
      "config": {every option, resolved},
      "environment": {host, CPU, GPUs, versions, "onnxruntime" | "tensorflow": {version, device, threads}},
      "notes": [str]
    }
    SPREAD = {"mean", "half_range95": 1.96 x population sd of the intervals,
              "mean_ci95": [low, high] (Student's t 95% confidence interval of the mean) | null}

Version 3 added the rows' operation counts, "peak", and the kind "peak" (`bench peak`: one row per
matrix-multiply kernel, its "samples" the rows of A, ops_per_sample 2 x K x N). Version-2 files load
with those absent (null). Version 1 also differs in SPREAD: {"mean", "ci95"}, where "ci95" held what version 2 calls
"half_range95" (it was never a confidence interval). Version-1 files load: "ci95" is read as
"half_range95", and "mean_ci95" is computed from the intervals the file kept.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import math
import statistics
from pathlib import Path
from typing import Any, Sequence

from toolkit.cli import UsageError

SCHEMA = "alexnet-toolkit/bench"
SCHEMA_VERSION = 3
KINDS = ("throughput", "latency", "sweep", "compare", "overhead", "train", "peak")
PERCENTILES = (50, 90, 95, 99)


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default, 'type 7').

    Exact on known inputs: over 0..100, p-th percentile is p; over 1..4, p50 is 2.5.
    """
    if not sorted_values:
        raise ValueError("percentile of no values")
    position = (len(sorted_values) - 1) * p / 100
    lower = math.floor(position)
    upper = min(lower + 1, len(sorted_values) - 1)
    fraction = position - lower
    return sorted_values[lower] + (sorted_values[upper] - sorted_values[lower]) * fraction


@dataclasses.dataclass(frozen=True)
class Latency:
    """Per-iteration latency statistics in milliseconds (stdev: sample standard deviation)."""

    count: int
    mean: float
    stdev: float
    min: float
    p50: float
    p90: float
    p95: float
    p99: float
    max: float

    @classmethod
    def from_values(cls, values_ms: Sequence[float]) -> "Latency":
        if not values_ms:
            raise ValueError("latency needs at least one measured iteration")
        ordered = sorted(values_ms)
        return cls(
            count=len(ordered),
            mean=statistics.fmean(ordered),
            stdev=statistics.stdev(ordered) if len(ordered) > 1 else 0.0,
            min=ordered[0],
            **{f"p{p}": percentile(ordered, p) for p in PERCENTILES},
            max=ordered[-1],
        )


@dataclasses.dataclass(frozen=True)
class Throughput:
    """Samples per second over the measured iterations: batch * count / total time."""

    samples_per_second: float
    batch: int
    iterations: int
    seconds: float

    @classmethod
    def from_latency(cls, latency: Latency, batch: int) -> "Throughput":
        seconds = latency.mean * latency.count / 1000
        return cls(samples_per_second=batch * latency.count / seconds if seconds > 0 else math.inf,
                   batch=batch, iterations=latency.count, seconds=seconds)


@dataclasses.dataclass(frozen=True)
class Row:
    """One measured configuration: a model on an engine at one batch size."""

    label: str
    engine: str
    model: str
    batch: int
    providers: tuple[str, ...]
    latency: Latency
    throughput: Throughput
    times_ms: tuple[float, ...]
    ratio: float | None = None
    ops_per_sample: float | None = None    # 2 x multiply-adds per sample, counted from the graph
    precision: str | None = None           # of most of those operations: "float32" or "int8"
    peak_gops: float | None = None         # the machine's measured peak for that precision, GOP/s

    @property
    def gops(self) -> float | None:
        """Achieved rate, 10^9 operations per second (GFLOP/s; GOP/s for int8)."""
        if self.ops_per_sample is None:
            return None
        return self.ops_per_sample * self.throughput.samples_per_second / 1e9

    @property
    def peak_fraction(self) -> float | None:
        return None if self.gops is None or not self.peak_gops else self.gops / self.peak_gops

    @classmethod
    def from_times(cls, *, label: str, engine: str, model: str, batch: int, providers: Sequence[str],
                   times_s: Sequence[float]) -> "Row":
        # Rounded to the nanosecond: perf_counter's resolution, and a JSON a third shorter.
        times_ms = tuple(round(t * 1000, 6) for t in times_s)
        latency = Latency.from_values(times_ms)
        return cls(label=label, engine=engine, model=model, batch=batch, providers=tuple(providers),
                   latency=latency, throughput=Throughput.from_latency(latency, batch), times_ms=times_ms)

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "engine": self.engine, "model": self.model, "batch": self.batch,
                "providers": list(self.providers), "latency_ms": dataclasses.asdict(self.latency),
                "throughput": dataclasses.asdict(self.throughput), "times_ms": list(self.times_ms),
                "ratio": self.ratio, "ops_per_sample": self.ops_per_sample, "precision": self.precision,
                "gop_per_s": self.gops, "peak_gop_per_s": self.peak_gops, "peak_fraction": self.peak_fraction}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "Row":
        return cls(label=obj["label"], engine=obj["engine"], model=obj["model"], batch=int(obj["batch"]),
                   providers=tuple(obj["providers"]), latency=Latency(**obj["latency_ms"]),
                   throughput=Throughput(**obj["throughput"]), times_ms=tuple(obj["times_ms"]),
                   ratio=obj.get("ratio"), ops_per_sample=obj.get("ops_per_sample"), precision=obj.get("precision"),
                   peak_gops=obj.get("peak_gop_per_s"))


@dataclasses.dataclass(frozen=True)
class Spread:
    """The mean of per-interval values, how widely the intervals scatter, and how well the mean is known.

    `half_range95` = 1.96 x the population standard deviation of the intervals: the half-width of
    the range that would hold ~95% of the intervals if they were normally distributed (Horovod's
    synthetic benchmark prints it after "+-"). It describes the intervals, so it does not shrink
    as more are measured. `mean_ci95` = (low, high), the 95% confidence interval of the mean:
    mean -+ t(0.975, n-1) * s / sqrt(n), s the sample standard deviation; Student's t because the
    intervals are few. None for a single interval.
    """

    mean: float
    half_range95: float
    mean_ci95: tuple[float, float] | None

    @classmethod
    def from_values(cls, values: Sequence[float]) -> "Spread":
        if not values:
            raise ValueError("spread of no values")
        mean = statistics.fmean(values)
        ci = None
        if len(values) > 1:
            from scipy.special import stdtrit  # the t quantile; scipy.special loads faster than scipy.stats

            half = float(stdtrit(len(values) - 1, 0.975)) * statistics.stdev(values) / math.sqrt(len(values))
            ci = (mean - half, mean + half)
        return cls(mean=mean, half_range95=1.96 * statistics.pstdev(values), mean_ci95=ci)

    def to_json(self) -> dict[str, Any]:
        return {"mean": self.mean, "half_range95": self.half_range95,
                "mean_ci95": None if self.mean_ci95 is None else list(self.mean_ci95)}

    @classmethod
    def from_json(cls, obj: dict[str, Any], values: Sequence[float], version: int) -> "Spread":
        """`values`: the intervals this spread summarises, for version 1, which had no confidence interval."""
        if version == 1:
            return cls(mean=obj["mean"], half_range95=obj["ci95"], mean_ci95=cls.from_values(values).mean_ci95)
        ci = obj["mean_ci95"]
        return cls(mean=obj["mean"], half_range95=obj["half_range95"],
                   mean_ci95=None if ci is None else (float(ci[0]), float(ci[1])))


@dataclasses.dataclass(frozen=True)
class TrainRow:
    """Training throughput at one Horovod world size."""

    np: int
    total: Spread
    per_rank: Spread
    efficiency: float | None
    intervals: tuple[float, ...]

    @classmethod
    def from_intervals(cls, np: int, intervals: Sequence[float], base: "TrainRow | None" = None) -> "TrainRow":
        """`intervals`: total img/s over all ranks, one per logged interval. `base`: the smallest world size."""
        total = Spread.from_values(intervals)
        per_rank = Spread.from_values([v / np for v in intervals])
        efficiency = per_rank.mean / base.per_rank.mean if base is not None else 1.0
        return cls(np=np, total=total, per_rank=per_rank, efficiency=efficiency, intervals=tuple(intervals))

    def to_json(self) -> dict[str, Any]:
        return {"np": self.np, "total": self.total.to_json(), "per_rank": self.per_rank.to_json(),
                "efficiency": self.efficiency, "intervals": list(self.intervals)}

    @classmethod
    def from_json(cls, obj: dict[str, Any], version: int) -> "TrainRow":
        np, intervals = int(obj["np"]), tuple(obj["intervals"])
        return cls(np=np, total=Spread.from_json(obj["total"], intervals, version),
                   per_rank=Spread.from_json(obj["per_rank"], [v / np for v in intervals], version),
                   efficiency=obj["efficiency"], intervals=intervals)


@dataclasses.dataclass(frozen=True)
class Peak:
    """The machine's attainable rate per precision (GOP/s), from a `bench peak` result: its best kernel's."""

    rates: dict[str, float]
    source: str                            # the results file it came from
    created: str
    cpu: str
    intra_op_threads: int | None

    @classmethod
    def from_result(cls, result: "BenchResult", source: str) -> "Peak":
        rates: dict[str, float] = {}
        for row in result.rows:
            if row.precision and row.gops is not None:
                rates[row.precision] = max(rates.get(row.precision, 0.0), row.gops)
        return cls(rates=rates, source=source, created=result.created,
                   cpu=result.environment.get("cpu", {}).get("model", "?"),
                   intra_op_threads=result.config.get("session", {}).get("intra_op_threads"))

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class BenchResult:
    kind: str
    config: dict[str, Any]
    environment: dict[str, Any]
    rows: tuple[Row, ...] = ()
    train: tuple[TrainRow, ...] = ()
    model: dict[str, Any] | None = None
    requested_providers: tuple[str, ...] = ()
    providers: tuple[str, ...] = ()
    fallback: str | None = None
    notes: tuple[str, ...] = ()
    peak: Peak | None = None
    created: str = dataclasses.field(
        default_factory=lambda: datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown result kind {self.kind!r}")

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"schema": SCHEMA, "version": SCHEMA_VERSION, "kind": self.kind,
                               "created": self.created, "model": self.model,
                               "requested_providers": list(self.requested_providers),
                               "providers": list(self.providers), "fallback": self.fallback}
        if self.kind in ("throughput", "latency") and len(self.rows) == 1:
            doc["throughput"] = self.rows[0].throughput.samples_per_second
            doc["latency_ms"] = dataclasses.asdict(self.rows[0].latency)
        doc["rows"] = [row.to_json() for row in self.rows]
        doc["train"] = [row.to_json() for row in self.train]
        doc.update(config=self.config, environment=self.environment, notes=list(self.notes),
                   peak=None if self.peak is None else self.peak.to_json())
        return doc

    @classmethod
    def from_json(cls, doc: Any, source: str = "results") -> "BenchResult":
        if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
            raise UsageError(f"{source} is not a bench results file (no \"schema\": \"{SCHEMA}\"): "
                             "pass a file written by `bench ... --json`")
        version = doc.get("version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise UsageError(f"{source} has no integer schema version: pass a file written by `bench ... --json`")
        if version > SCHEMA_VERSION:
            raise UsageError(f"{source} has schema version {version}, newer than this bench reads "
                             f"({SCHEMA_VERSION}): upgrade alexnet-toolkit to read it")
        if version < 1:
            raise UsageError(f"{source} has unknown schema version {version}: pass a file written by `bench`")
        try:
            return cls(kind=doc["kind"], config=doc["config"], environment=doc["environment"],
                       rows=tuple(Row.from_json(r) for r in doc["rows"]),
                       train=tuple(TrainRow.from_json(r, version) for r in doc["train"]),
                       model=doc.get("model"), requested_providers=tuple(doc["requested_providers"]),
                       providers=tuple(doc["providers"]), fallback=doc.get("fallback"),
                       notes=tuple(doc.get("notes", ())), created=doc["created"],
                       peak=None if doc.get("peak") is None else Peak(**doc["peak"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"{source} is a malformed bench results file ({type(exc).__name__}: {exc}): "
                             "re-run the benchmark with --json") from None


def load(path: str | Path) -> BenchResult:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UsageError(f"results file {path} does not exist: pass a file written by `bench ... --json`") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read results file {path} ({exc}): pass a bench JSON file") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"results file {path} is not valid JSON ({exc.msg} at line {exc.lineno}): "
                         "pass a file written by `bench ... --json`") from None
    return BenchResult.from_json(doc, source=str(path))
