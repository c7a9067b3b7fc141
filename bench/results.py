"""Benchmark results: pure dataclasses, their JSON form, and a loader that refuses what it cannot read.

Every number a user quotes comes from here: `Latency.from_values` (per-iteration times in
milliseconds -> mean, stdev, min, p50, p90, p95, p99, max) and `Throughput.from_latency`
(batch / mean iteration time). The raw per-iteration times are kept in the JSON so runs can
be merged and re-analysed later.

JSON schema (version 3), written by `bench ... --json PATH`:

    {
      "schema": "alexnet-toolkit/bench", "version": 3,
      "kind": "throughput" | "latency" | "sweep" | "compare" | "overhead" | "train" | "load" | "check",
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
                "rounds": [iterations per interleaved round] (compare; else []),
                "ci95": {"samples_per_second", "p50", "p90", "p95", "p99": INTERVAL | null}, "cv": float}],
      "train": [{"np", "total": SPREAD, "per_rank": SPREAD, "efficiency",
                 "intervals": [total img/s per interval]}],                 # kind "train"
      "load": [LOAD_ROW],                                                   # kind "load"
      "comparisons": [{"row", "baseline", "metric", "higher_is_better", "base_value", "value", "ratio",
                       "interval": INTERVAL | null, "verdict", "test", "allowed_slowdown", "regression"}],
                                                                            # kinds "compare", "check"
      "warnings": [str],                      # unstable measurements: cause and fix
      "config": {every option, resolved},
      "environment": {host, CPU, GPUs, versions, "onnxruntime" | "tensorflow": {version, device, threads}},
      "notes": [str]
    }
    SPREAD = {"mean", "half_range95": 1.96 x population sd of the intervals,
              "mean_ci95": [low, high] (Student's t 95% confidence interval of the mean) | null}
    INTERVAL = [low | null, high | null]: a 95% confidence interval, null where the data cannot
               bound that side (bench/stats.py says how each is computed)
    LOAD_ROW = bench/scenarios.py LoadRow.to_json: "settings", "timeline" (per query: intended,
               issued, started, done, in s) and the flags "peak", "overloaded", "scheduled" are what
               a reader re-derives the rest from; "valid", "reasons", "metric", "metric_value",
               "metric_ci95", "early_stopping", "latency"/"queueing"/"compute"/"schedule_error"
               {mean, p50, p90, p99, max} (ms) are written for other readers.

Version 1 differs only in SPREAD: {"mean", "ci95"}, where "ci95" held what version 2 calls
"half_range95" (it was never a confidence interval). Version-1 files load: "ci95" is read as
"half_range95", and "mean_ci95" is computed from the intervals the file kept.
Version 3 added kinds "load" and "check", "load", "comparisons", "warnings", and each row's
"rounds", "ci95" and "cv"; version 1 and 2 files load with none of those (a row's intervals are
computed from the times it kept).
"""
from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import math
import statistics
from pathlib import Path
from typing import Any, Sequence

from bench import stats
from bench.scenarios import LoadRow
from bench.stats import Comparison, Interval
from toolkit.cli import UsageError

SCHEMA = "alexnet-toolkit/bench"
SCHEMA_VERSION = 3
KINDS = ("throughput", "latency", "sweep", "compare", "overhead", "train", "load", "check")
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
class RowIntervals:
    """95% confidence intervals of a row's samples/s (batch means) and latency percentiles (order
    statistics), and the coefficient of variation of its run times."""

    samples_per_second: Interval | None
    p50: Interval
    p90: Interval
    p95: Interval
    p99: Interval
    cv: float

    @classmethod
    def from_times(cls, times_ms: Sequence[float], batch: int) -> "RowIntervals":
        return cls(samples_per_second=stats.throughput_interval([t / 1000 for t in times_ms], batch),
                   **{f"p{p}": stats.percentile_interval(times_ms, p / 100) for p in PERCENTILES},
                   cv=stats.coefficient_of_variation(times_ms))

    def to_json(self) -> dict[str, Any]:
        return {"ci95": {"samples_per_second": None if self.samples_per_second is None
                         else self.samples_per_second.to_json(),
                         **{f"p{p}": getattr(self, f"p{p}").to_json() for p in PERCENTILES}},
                "cv": self.cv}


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
    rounds: tuple[int, ...] = ()   # iterations per interleaved round (compare), in the order of times_ms

    @functools.cached_property
    def intervals(self) -> RowIntervals:
        return RowIntervals.from_times(self.times_ms, self.batch)

    def round_throughputs(self) -> list[float]:
        """samples/s of each interleaved round."""
        out, start = [], 0
        for count in self.rounds:
            out.append(self.batch * count * 1000 / sum(self.times_ms[start:start + count]))
            start += count
        return out

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
                "ratio": self.ratio, "rounds": list(self.rounds), **self.intervals.to_json()}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "Row":
        return cls(label=obj["label"], engine=obj["engine"], model=obj["model"], batch=int(obj["batch"]),
                   providers=tuple(obj["providers"]), latency=Latency(**obj["latency_ms"]),
                   throughput=Throughput(**obj["throughput"]), times_ms=tuple(obj["times_ms"]),
                   ratio=obj.get("ratio"), rounds=tuple(obj.get("rounds", ())))


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
        interval = stats.mean_interval(values)
        return cls(mean=statistics.fmean(values), half_range95=1.96 * statistics.pstdev(values),
                   mean_ci95=None if interval is None else (interval.low, interval.high))

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
    created: str = dataclasses.field(
        default_factory=lambda: datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    load: tuple[LoadRow, ...] = ()
    comparisons: tuple[Comparison, ...] = ()
    warnings: tuple[str, ...] = ()

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
        doc["load"] = [row.to_json() for row in self.load]
        doc["comparisons"] = [c.to_json() for c in self.comparisons]
        doc.update(config=self.config, environment=self.environment, notes=list(self.notes),
                   warnings=list(self.warnings))
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
                       load=tuple(LoadRow.from_json(r) for r in doc.get("load", ())),
                       comparisons=tuple(Comparison.from_json(c) for c in doc.get("comparisons", ())),
                       warnings=tuple(doc.get("warnings", ())))
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
