"""Benchmark results: pure dataclasses, their JSON form, and a loader that refuses what it cannot read.

Every number a user quotes comes from here: `Latency.from_values` (per-iteration times in
milliseconds -> mean, stdev, min, p50, p90, p95, p99, max) and `Throughput.from_latency`
(batch / mean iteration time). The raw per-iteration times are kept in the JSON so runs can
be merged and re-analysed later.

JSON schema (version 6), written by `bench ... --json PATH` (and scripts/gpu-check.sh):

    {
      "schema": "alexnet-toolkit/bench", "version": 6,
      "kind": "throughput" | "latency" | "sweep" | "compare" | "overhead" | "train" | "load" | "check"
              | "profile" | "tune" | "gpucheck" | "peak" | "allreduce",
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
                "ci95": {"samples_per_second", "p50", "p90", "p95", "p99": INTERVAL | null}, "cv": float,
                "resources": RESOURCES | null, "device_times": DEVICE_TIMES | null,
                "ops_per_sample": 2 x multiply-adds counted from the graph (bench/opcount.py) | null,
                "precision": "float32" | "int8" | null, "gop_per_s": achieved | null,
                "peak_gop_per_s": the measured peak of that precision | null, "peak_fraction": float | null}],
      "peak": {"rates": {"float32": GOP/s, "int8": GOP/s}, "source", "created", "cpu", "intra_op_threads"}
              | null,                       # the `bench peak` result the rows are compared with
      "train": [{"np", "total": SPREAD, "per_rank": SPREAD, "efficiency",
                 "intervals": [total img/s per interval]}],                 # kind "train"
      "allreduce": [{"np", "bytes", "count", "wrong", "times_us": [[per iteration] per rank], "time_us",
                     "algbw_gb_s", "busbw_gb_s", "latency_us": {"avg", "min", "max"}}],   # kind "allreduce"
      "load": [LOAD_ROW],                                                   # kind "load"
      "peak_check": {"found", "upper" | null, "rechecks": [[qps, passed]], "confirmed" | null} | null,
                                                                            # kind "load" with --find-peak
      "loadgen": [{"valid", "metric", "metric_value", "reasons", "overloaded", "summary", "detail",
                   "results": {LoadGen's result_* keys}}],                  # --engine loadgen: one per load row
      "comparisons": [{"row", "baseline", "metric", "higher_is_better", "base_value", "value", "ratio",
                       "interval": INTERVAL | null, "verdict", "test", "allowed_slowdown", "regression"}],
                                                                            # kinds "compare", "check"
      "profiles": [PROFILE],                                                # kind "profile"; `compare --profile`
      "tune": TUNE | null,                                                  # kind "tune"
      "checks": [{"name", "passed": bool | null, "value": float | null, "limit": float | null, "detail"}],
                                                                            # kind "gpucheck" (null: not run)
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
               "metric_ci95", "early_stopping", "latency"/"queueing"/"compute"/"schedule_error"/"handoff"
               {mean, p50, p90, p99, max} (ms), "arrivals" (server: ARRIVALS | null) are written for other
               readers; "resources": RESOURCES | null (what the process used during the test).
    ARRIVALS = {"queries", "qps", "rate", "rate_ci": INTERVAL | null, "rate_p", "gaps_ks", "gaps_p", "dispersion",
                "dispersion_p", "windows", "passed": bool | null}: the issue times against the intended Poisson
               process (bench/scenarios.py ArrivalCheck; a p-value null where too few queries)

    DEVICE_TIMES = {"h2d_ms": [...], "compute_ms": [...], "d2h_ms": [...] (per sampled run), "input_bytes",
                    "output_bytes", "method"}: where a run's time goes on a GPU (null on CPU: not applicable)
    RESOURCES = {"peak_rss_bytes", "cpu_seconds", "wall_seconds", "usable_cpus", "cpu_utilisation",
                 "first_run_ms", "load_seconds" | null, "device_memory_bytes" | null}
    PROFILE = {"label", "engine", "batch", "runs", "wall_ms", "runtime_ms" | null, "overlapping",
               "session_providers": [...], "ops": [OPTIME], "nodes": [OPTIME]}
    OPTIME = {"name", "op", "providers": [...], "nodes", "calls", "total_ms"}
    TUNE = {"points": [{"setting": SETTING, "samples_per_second", "p99_ms", "p90_ms", "iterations", "phase"}],
            "pareto": [indices into points], "budget_ms" | null, "defaults": SETTING, "chosen": SETTING,
            "config_path" | null, "search_seconds", "confirmed": [{"label": row label, "setting": SETTING}]}
    SETTING = {"variant", "model", "provider", "intra_op_threads", "spinning", "graph_optimization",
               "execution_mode", "batch"}

Changelog, a line a version (every older version loads; what a file lacks is absent, or computed where said):
    v1  SPREAD {"mean", "ci95"}, "ci95" never a confidence interval: read as "half_range95"; "mean_ci95" computed
    v2  SPREAD {"mean", "half_range95", "mean_ci95"}: the spread of the intervals and the mean's interval apart
    v3  kinds "load" and "check"; "load", "comparisons", "warnings"; rows' "rounds", "ci95", "cv" (else from times)
    v4  kinds "profile" and "tune"; "profiles", "tune"; "resources" of rows and load rows (else null)
    v5  kind "gpucheck" and its "checks"; rows' "device_times", the H2D/compute/D2H split on a GPU (else null)
        kind "peak" (`bench peak`: a row per matrix-multiply kernel, its "samples" the rows of A, ops_per_sample
        2 x K x N); "peak"; rows' "ops_per_sample", "precision", "gop_per_s", "peak_gop_per_s", "peak_fraction"
        (else null)
    v6  load rows' "handoff" (the generator's hand-off to a worker) and "arrivals" (server: the issue times against
        the intended Poisson process); "queueing" is now only the wait while every worker is busy (all computed
        from the timeline, older files' too); "peak_check" (a --find-peak peak re-checked, bench/scenarios.py
        PeakCheck; else null); "loadgen" (`load --engine loadgen`: MLPerf LoadGen's verdict of each load row and
        its log files, bench/loadgen.py; else []); compare's config "turn_order" (mirrored rounds, A B B A; older:
        fixed order); check's config "results" and "baselines" (each side's runs; "result" and "baseline" join
        them); a comparison from one run a side has verdict "no verdict (one run a side)" and regression null;
        kind "allreduce" and its "allreduce" rows (`bench allreduce`, bench/allreduce.py: "time_us", "algbw_gb_s",
        "busbw_gb_s" and "latency_us" are computed from "times_us"; else [])
"""
from __future__ import annotations

import dataclasses
import datetime
import functools
import math
import statistics
from pathlib import Path
from typing import Any, Sequence

from bench import stats
from bench.loadgen import LoadGenLog
from bench.scenarios import LoadRow, PeakCheck
from bench.stats import Comparison, Interval
from toolkit.cli import UsageError
from toolkit.files import read_json
from toolkit.runs import decode, decode_value

SCHEMA = "alexnet-toolkit/bench"
SCHEMA_VERSION = 6
KINDS = ("throughput", "latency", "sweep", "compare", "overhead", "train", "load", "check", "profile", "tune",
         "gpucheck", "peak", "allreduce")
PERCENTILES = (50, 90, 95, 99)


def _ms_of(times_s: Sequence[float]) -> tuple[float, ...]:
    """Seconds -> milliseconds, rounded to the nanosecond: perf_counter's resolution, and a JSON a third shorter."""
    return tuple(round(t * 1000, 6) for t in times_s)


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
    resources: Resources | None = None  # what the measuring process used (schema version 4)
    device_times: DeviceTimes | None = None  # H2D / compute / D2H on a GPU; None on CPU (schema version 5)
    ops_per_sample: float | None = None    # 2 x multiply-adds per sample, counted from the graph (version 5)
    precision: str | None = None           # of most of those operations: "float32" or "int8"
    peak_gops: float | None = None         # the machine's measured peak for that precision, GOP/s

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
                   times_s: Sequence[float], resources: Resources | None = None,
                   device_times: DeviceTimes | None = None) -> "Row":
        times_ms = _ms_of(times_s)
        latency = Latency.from_values(times_ms)
        return cls(label=label, engine=engine, model=model, batch=batch, providers=tuple(providers),
                   latency=latency, throughput=Throughput.from_latency(latency, batch), times_ms=times_ms,
                   resources=resources, device_times=device_times)

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "engine": self.engine, "model": self.model, "batch": self.batch,
                "providers": list(self.providers), "latency_ms": dataclasses.asdict(self.latency),
                "throughput": dataclasses.asdict(self.throughput), "times_ms": list(self.times_ms),
                "ratio": self.ratio, "rounds": list(self.rounds), **self.intervals.to_json(),
                "resources": None if self.resources is None else self.resources.to_json(),
                "device_times": None if self.device_times is None else self.device_times.to_json(),
                "ops_per_sample": self.ops_per_sample, "precision": self.precision,
                "gop_per_s": self.gops, "peak_gop_per_s": self.peak_gops, "peak_fraction": self.peak_fraction}

    @classmethod
    def from_json(cls, obj: Any, where: str = "row") -> "Row":
        obj = _object(obj, where)
        if not obj.get("times_ms"):
            raise ValueError(f"{where}.times_ms holds no run times")
        renamed = {field: obj[key] for field, key in (("latency", "latency_ms"), ("peak_gops", "peak_gop_per_s"))
                   if key in obj}
        return decode(cls, {**obj, **renamed}, where)


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
        low, high = (None, None) if interval is None else (interval.low, interval.high)
        return cls(mean=statistics.fmean(values), half_range95=1.96 * statistics.pstdev(values),
                   mean_ci95=None if low is None or high is None else (low, high))

    def to_json(self) -> dict[str, Any]:
        return {"mean": self.mean, "half_range95": self.half_range95,
                "mean_ci95": None if self.mean_ci95 is None else list(self.mean_ci95)}

    @classmethod
    def from_json(cls, obj: Any, values: Sequence[float], version: int, where: str = "spread") -> "Spread":
        """`values`: the intervals this spread summarises, for version 1, which had no confidence interval."""
        obj = _object(obj, where)
        if version == 1:
            spread = decode(cls, {"mean": obj["mean"], "half_range95": obj["ci95"], "mean_ci95": None}, where)
            return dataclasses.replace(spread, mean_ci95=cls.from_values(values).mean_ci95)
        return decode(cls, obj, where)


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
    def from_json(cls, obj: Any, version: int, where: str = "train") -> "TrainRow":
        obj = _object(obj, where)
        np = decode_value(int, obj["np"], f"{where}.np")
        intervals = decode_value(tuple[float, ...], obj["intervals"], f"{where}.intervals")
        if np < 1 or not intervals:
            raise ValueError(f"{where} needs np >= 1 and at least one interval")
        return decode(cls, {**obj, "total": Spread.from_json(obj["total"], intervals, version, f"{where}.total"),
                            "per_rank": Spread.from_json(obj["per_rank"], [v / np for v in intervals], version,
                                                         f"{where}.per_rank")}, where)


@dataclasses.dataclass(frozen=True)
class AllreduceRow:
    """All-reduce of one message size at one world size, as nccl-tests and the OSU micro-benchmarks report it.

    `times_us[r][i]`: rank r's i-th timed all-reduce. An all-reduce is done when its slowest rank is, so
    `time_us` is the mean over iterations of the slowest rank's time (nccl-tests' `-a 3`; its default
    averages the ranks instead). nccl-tests' PERFORMANCE.md: algbw = bytes / time; for all-reduce
    busbw = algbw x 2(n-1)/n, the bytes each rank's link carries in a ring, so that busbw is comparable
    with the link rate whatever n. `latency_us`: each rank's mean over the iterations, then the average,
    minimum and maximum over ranks (osu_allreduce's Avg, Min, Max Latency). `wrong`: elements of the
    checked sum that were wrong (nccl-tests' #wrong; a wrong size is not timed).
    """

    np: int
    bytes: int
    count: int
    wrong: int
    times_us: tuple[tuple[float, ...], ...]

    def __post_init__(self):
        if self.np < 1 or self.bytes < 1 or any(len(r) != len(self.times_us[0]) for r in self.times_us):
            raise ValueError(f"all-reduce row np {self.np}, {self.bytes} bytes: needs np >= 1, bytes >= 1 and "
                             "as many times for every rank")

    @classmethod
    def from_seconds(cls, np: int, size: int, count: int, wrong: int,
                     times_s: Sequence[Sequence[float]]) -> "AllreduceRow":
        return cls(np=np, bytes=size, count=count, wrong=wrong,
                   times_us=tuple(tuple(round(t * 1e6, 3) for t in rank) for rank in times_s))

    @property
    def time_us(self) -> float | None:
        if not self.times_us or not self.times_us[0]:
            return None
        return statistics.fmean(max(iteration) for iteration in zip(*self.times_us))

    @property
    def algbw_gb_s(self) -> float | None:
        return None if not self.time_us else self.bytes / (self.time_us * 1e-6) / 1e9

    @property
    def busbw_gb_s(self) -> float | None:
        algbw = self.algbw_gb_s
        return None if algbw is None else algbw * 2 * (self.np - 1) / self.np

    @property
    def latency_us(self) -> dict[str, float] | None:
        if self.time_us is None:
            return None
        means = [statistics.fmean(rank) for rank in self.times_us]
        return {"avg": statistics.fmean(means), "min": min(means), "max": max(means)}

    @classmethod
    def from_json(cls, obj: Any) -> "AllreduceRow":
        """The measured fields; time, bandwidths and latency are computed from them again."""
        return cls(np=int(obj["np"]), bytes=int(obj["bytes"]), count=int(obj["count"]), wrong=int(obj["wrong"]),
                   times_us=tuple(tuple(float(t) for t in rank) for rank in obj["times_us"]))

    def to_json(self) -> dict[str, Any]:
        return {"np": self.np, "bytes": self.bytes, "count": self.count, "wrong": self.wrong,
                "times_us": [list(rank) for rank in self.times_us], "time_us": self.time_us,
                "algbw_gb_s": self.algbw_gb_s, "busbw_gb_s": self.busbw_gb_s, "latency_us": self.latency_us}


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
    allreduce: tuple[AllreduceRow, ...] = ()  # kind "allreduce" (schema version 6)
    model: dict[str, Any] | None = None
    requested_providers: tuple[str, ...] = ()
    providers: tuple[str, ...] = ()
    fallback: str | None = None
    notes: tuple[str, ...] = ()
    peak: Peak | None = None
    created: str = dataclasses.field(
        default_factory=lambda: datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    load: tuple[LoadRow, ...] = ()
    comparisons: tuple[Comparison, ...] = ()
    warnings: tuple[str, ...] = ()
    profiles: tuple[Profile, ...] = ()  # kind "profile", and `compare --profile` (schema version 4)
    tune: Tune | None = None            # kind "tune" (schema version 4)
    checks: tuple[Check, ...] = ()      # kind "gpucheck" (schema version 5)
    peak_check: PeakCheck | None = None  # `load --find-peak`'s re-check (schema version 6)
    loadgen: tuple[LoadGenLog, ...] = ()  # `load --engine loadgen`: LoadGen's verdict per load row (version 6)

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
        doc["allreduce"] = [row.to_json() for row in self.allreduce]
        doc["load"] = [row.to_json() for row in self.load]
        doc["comparisons"] = [c.to_json() for c in self.comparisons]
        doc["profiles"] = [profile.to_json() for profile in self.profiles]
        doc["tune"] = None if self.tune is None else self.tune.to_json()
        doc["checks"] = [dataclasses.asdict(check) for check in self.checks]
        doc["peak_check"] = None if self.peak_check is None else self.peak_check.to_json()
        doc["loadgen"] = [log.to_json() for log in self.loadgen]
        doc.update(config=self.config, environment=self.environment, notes=list(self.notes),
                   warnings=list(self.warnings), peak=None if self.peak is None else self.peak.to_json())
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
            return decode(cls, {**doc, **_built_parts(doc, version)}, "results")
        except (LookupError, TypeError, ValueError, ArithmeticError, UsageError) as exc:
            raise UsageError(f"{source} is a malformed bench results file ({type(exc).__name__}: {exc}): "
                             "re-run the benchmark with --json") from None


# What bench reads from a result's free-form records (report, check, peak), declared so that loading checks it:
# the records themselves stay dicts, every option and version as written.

@dataclasses.dataclass(frozen=True)
class _InputView:
    name: str
    dtype: str
    shape: tuple[int | str | None, ...]


@dataclasses.dataclass(frozen=True)
class _ModelView:
    path: str
    inputs: tuple[_InputView, ...] = ()
    outputs: tuple[Any, ...] = ()


@dataclasses.dataclass(frozen=True)
class _CpuView:
    model: str = "?"
    usable_cores: int | None = None


@dataclasses.dataclass(frozen=True)
class _EnvironmentView:
    cpu: _CpuView = _CpuView()
    gpus: tuple[dict[str, str], ...] = ()
    packages: dict[str, str] = dataclasses.field(default_factory=dict)
    hostname: str = "?"
    python: str = "?"
    memory_bytes: int | None = None


@dataclasses.dataclass(frozen=True)
class _SessionView:
    intra_op_threads: int | None = None


@dataclasses.dataclass(frozen=True)
class _ConfigView:
    session: _SessionView = _SessionView()


@dataclasses.dataclass(frozen=True)
class _CheckConfigView:
    result: str
    baseline: str
    max_slowdown: float


def _object(obj: Any, where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise TypeError(f"{where} must be a JSON object, got {type(obj).__name__}")
    return obj


def _list(obj: Any, where: str) -> list[Any]:
    if not isinstance(obj, list):
        raise TypeError(f"{where} must be a list, got {type(obj).__name__}")
    return obj


def _built_parts(doc: dict[str, Any], version: int) -> dict[str, Any]:
    """The parts of a results document whose JSON differs from their dataclass (renamed fields, versions,
    what a reader re-derives), built by their own readers; `decode` checks the rest against BenchResult."""
    for key in ("kind", "config", "environment", "requested_providers", "providers", "created"):
        doc[key]  # required in every version (KeyError names it)
    decode_value(_ModelView | None, doc.get("model"), "model")
    decode(_EnvironmentView, doc["environment"], "environment")
    decode(_CheckConfigView if doc["kind"] == "check" else _ConfigView, doc["config"], "config")
    if doc["kind"] == "tune" and doc.get("tune") is None:
        raise ValueError('a "tune" result holds its search: "tune" is missing')
    return {"rows": [Row.from_json(r, f"rows[{i}]") for i, r in enumerate(_list(doc["rows"], "rows"))],
            "train": [TrainRow.from_json(r, version, f"train[{i}]")
                      for i, r in enumerate(_list(doc["train"], "train"))],
            "load": [LoadRow.from_json(r) for r in _list(doc.get("load", []), "load")],
            "allreduce": [AllreduceRow.from_json(r) for r in _list(doc.get("allreduce", []), "allreduce")],
            "peak_check": PeakCheck.from_json(doc["peak_check"]) if doc.get("peak_check") is not None else None,
            "loadgen": [LoadGenLog.from_json(g) for g in _list(doc.get("loadgen", []), "loadgen")],
            "comparisons": [_comparison(c, f"comparisons[{i}]")
                            for i, c in enumerate(_list(doc.get("comparisons", []), "comparisons"))],
            "tune": Tune.from_json(doc["tune"]) if doc.get("tune") is not None else None}


def _comparison(obj: Any, where: str) -> Comparison:
    obj = _object(obj, where)
    pair = decode_value(tuple[float | None, float | None] | None, obj["interval"], f"{where}.interval")
    return decode(Comparison, {**obj, "interval": None if pair is None else Interval(*pair)}, where)


def load(path: str | Path) -> BenchResult:
    path = Path(path)
    doc = read_json(path, "results file", "pass a file written by `bench ... --json`")
    return BenchResult.from_json(doc, source=str(path))


# ---- Schema version 4: resources and cold start, per-operator profiles, tuning ----

@dataclasses.dataclass(frozen=True)
class Resources:
    """What the measuring process used, read from the process itself (bench/resources.py), never estimated.

    `peak_rss_bytes`: the process's resident-memory high-water mark so far (VmHWM); it
    includes the interpreter and the runtime, and never falls, so a later row of one process shows at
    least an earlier row's. `cpu_seconds` and `wall_seconds`: CPU time of all the process's threads and
    wall time over the measured runs; `cpu_utilisation` = CPU / wall / usable CPUs (1.0: every usable
    CPU busy all the time; spin-waiting counts as busy). `first_run_ms`: the first run at this batch
    size, timed alone (buffer allocation, kernel choice; TensorFlow's tf.function trace). `load_seconds`:
    creating the onnxruntime session (graph optimisation included) or loading the Keras file.
    `device_memory_bytes`: the process's GPU memory after the runs, as nvidia-smi reports it (CUDA and
    TensorRT sessions only; onnxruntime's arena keeps its peak); None on CPU or where it cannot be read.
    """

    peak_rss_bytes: int
    cpu_seconds: float
    wall_seconds: float
    usable_cpus: int
    first_run_ms: float
    load_seconds: float | None = None
    device_memory_bytes: int | None = None

    @property
    def cpu_utilisation(self) -> float:
        return self.cpu_seconds / (self.wall_seconds * self.usable_cpus) if self.wall_seconds > 0 else 0.0

    def then(self, later: "Resources") -> "Resources":
        """This window followed by `later` in the same process (compare's rounds): times add, peaks are the max."""
        devices = [d for d in (self.device_memory_bytes, later.device_memory_bytes) if d is not None]
        return dataclasses.replace(self, peak_rss_bytes=max(self.peak_rss_bytes, later.peak_rss_bytes),
                                   cpu_seconds=self.cpu_seconds + later.cpu_seconds,
                                   wall_seconds=self.wall_seconds + later.wall_seconds,
                                   device_memory_bytes=max(devices) if devices else None)

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "cpu_utilisation": self.cpu_utilisation}

    @classmethod
    def from_json(cls, obj: Any) -> "Resources":
        return decode(cls, obj, "resources")


@dataclasses.dataclass(frozen=True)
class Kernel:
    """One kernel execution read from a runtime's trace: the input of `Profile.from_kernels`, not stored."""

    node: str
    op: str
    provider: str
    ms: float


@dataclasses.dataclass(frozen=True)
class OpTime:
    """Kernel time of one operator type, or of one node, summed over the profiled runs."""

    name: str                       # the op type (Profile.ops) or the node's name (Profile.nodes)
    op: str
    providers: tuple[str, ...]      # which provider(s) ran it
    nodes: int                      # distinct nodes (1 for a node)
    calls: int                      # kernel executions
    total_ms: float

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "providers": list(self.providers)}


def _aggregate(kernels: Sequence[Kernel], key) -> tuple[OpTime, ...]:
    groups: dict[str, list[Kernel]] = {}
    for kernel in kernels:
        groups.setdefault(key(kernel), []).append(kernel)
    times = [OpTime(name=name, op=group[0].op, providers=tuple(sorted({k.provider for k in group})),
                    nodes=len({k.node for k in group}), calls=len(group), total_ms=math.fsum(k.ms for k in group))
             for name, group in groups.items()]
    return tuple(sorted(times, key=lambda t: (-t.total_ms, t.name)))


@dataclasses.dataclass(frozen=True)
class Profile:
    """Where one engine's time went at one batch size: kernel time per operator type and per node.

    `wall_ms`: the profiled runs' wall time as the harness measured it; `runtime_ms`: the runtime's own
    span of those runs (onnxruntime's model_run events; None where the runtime gives none). The kernels
    add up to less than the wall time; `coverage` = kernels / wall says how much less (what is left:
    the Python call and input/output conversion outside the runtime, the executor, allocation and
    thread synchronisation inside it, and the profiler's own bookkeeping). Where kernels run
    concurrently (`overlapping`: TensorFlow's inter-op threads, onnxruntime's parallel executor)
    their sum can exceed the wall time. `session_providers`: what the session ran on, in preference order.
    """

    label: str
    engine: str
    batch: int
    runs: int
    wall_ms: float
    runtime_ms: float | None
    ops: tuple[OpTime, ...]         # per op type, largest total first
    nodes: tuple[OpTime, ...]       # per node, largest total first
    session_providers: tuple[str, ...]
    overlapping: bool = False

    @classmethod
    def from_kernels(cls, kernels: Sequence[Kernel], *, label: str, engine: str, batch: int, runs: int,
                     wall_ms: float, runtime_ms: float | None, session_providers: Sequence[str],
                     overlapping: bool = False) -> "Profile":
        if runs < 1:
            raise ValueError("a profile needs at least one profiled run")
        return cls(label=label, engine=engine, batch=batch, runs=runs, wall_ms=wall_ms, runtime_ms=runtime_ms,
                   ops=_aggregate(kernels, lambda k: k.op), nodes=_aggregate(kernels, lambda k: k.node),
                   session_providers=tuple(session_providers), overlapping=overlapping)

    @property
    def kernel_ms(self) -> float:
        return math.fsum(op.total_ms for op in self.ops)

    @property
    def coverage(self) -> float:
        return self.kernel_ms / self.wall_ms if self.wall_ms > 0 else 0.0

    def share(self, time: OpTime) -> float:
        total = self.kernel_ms
        return time.total_ms / total if total > 0 else 0.0

    @property
    def nodes_by_provider(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for node in self.nodes:
            for provider in node.providers:
                counts[provider] = counts.get(provider, 0) + 1
        return dict(sorted(counts.items(), key=lambda item: -item[1]))

    @property
    def cpu_fallback_nodes(self) -> int | None:
        """Nodes that ran on the CPU in a session that prefers another provider; None in a CPU session."""
        first = self.session_providers[0] if self.session_providers else None
        if first is None or first.startswith("CPU") or first.startswith("TensorFlow"):
            return None
        return sum(1 for node in self.nodes if any(p.startswith("CPU") for p in node.providers))

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "engine": self.engine, "batch": self.batch, "runs": self.runs,
                "wall_ms": self.wall_ms, "runtime_ms": self.runtime_ms, "overlapping": self.overlapping,
                "session_providers": list(self.session_providers), "ops": [o.to_json() for o in self.ops],
                "nodes": [n.to_json() for n in self.nodes]}

    @classmethod
    def from_json(cls, obj: Any) -> "Profile":
        return decode(cls, obj, "profile")


@dataclasses.dataclass(frozen=True)
class Setting:
    """One point of `bench tune`'s search: a model variant, a provider, session options and a batch size."""

    variant: str                    # "float32" (the model itself), "float16", "int8"
    model: str                      # the file of that variant
    provider: str                   # "cpu", "cuda", "tensorrt"
    intra_op_threads: int           # 0: onnxruntime's default (one per physical core, pinned)
    spinning: bool                  # session.intra_op.allow_spinning
    graph_optimization: str
    execution_mode: str
    batch: int

    def describe(self) -> str:
        threads = "onnxruntime's default" if self.intra_op_threads == 0 else str(self.intra_op_threads)
        return (f"{self.variant}, {self.provider}, threads {threads}, spinning {'on' if self.spinning else 'off'}, "
                f"graph {self.graph_optimization}, {self.execution_mode}, batch {self.batch}")


@dataclasses.dataclass(frozen=True)
class TunePoint:
    """One measured point: short measurements during the search ("defaults" or "search" phase).

    `p90_ms` is what the search judges a latency budget by: a short measurement's p99 is its
    slowest run or nearly, so one preemption decides it; the confirmation measures the real p99.
    """

    setting: Setting
    samples_per_second: float
    p99_ms: float
    p90_ms: float
    iterations: int
    phase: str

    def dominates(self, other: "TunePoint") -> bool:
        """At least as fast and at least as low in p99, and better in one of them."""
        return (self.samples_per_second >= other.samples_per_second and self.p99_ms <= other.p99_ms
                and (self.samples_per_second > other.samples_per_second or self.p99_ms < other.p99_ms))

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Tune:
    """`bench tune`'s search: every point it tried, the defaults it started from, and what it chose.

    The throughput-vs-p99 Pareto front is computed from the points (`pareto`): the points no other
    point beats in both. The confirmed numbers (interleaved rounds: the best candidates and the
    defaults) are the result's rows; `confirmed` says which setting each row measured.
    """

    points: tuple[TunePoint, ...]
    budget_ms: float | None
    defaults: Setting               # the starting point (the benchmark's defaults), at the chosen batch size
    chosen: Setting
    config_path: str | None         # the file `--config` takes
    search_seconds: float
    confirmed: tuple[tuple[str, Setting], ...] = ()  # each confirmation row's label and setting

    @property
    def pareto(self) -> tuple[int, ...]:
        """Indices of the front's points, fastest first."""
        front = [i for i, p in enumerate(self.points) if not any(q.dominates(p) for q in self.points)]
        return tuple(sorted(front, key=lambda i: (-self.points[i].samples_per_second, self.points[i].p99_ms)))

    def to_json(self) -> dict[str, Any]:
        return {"points": [p.to_json() for p in self.points], "pareto": list(self.pareto),
                "budget_ms": self.budget_ms, "defaults": dataclasses.asdict(self.defaults),
                "chosen": dataclasses.asdict(self.chosen), "config_path": self.config_path,
                "search_seconds": self.search_seconds,
                "confirmed": [{"label": label, "setting": dataclasses.asdict(s)} for label, s in self.confirmed]}

    @classmethod
    def from_json(cls, obj: Any) -> "Tune":
        obj = _object(obj, "tune")
        confirmed = [_object(c, f"tune.confirmed[{i}]")
                     for i, c in enumerate(_list(obj["confirmed"], "tune.confirmed"))]
        return decode(cls, {**obj, "confirmed": [(c["label"], c["setting"]) for c in confirmed]}, "tune")


# ---- Schema version 5: where GPU time goes, and the GPU check's verdicts ----

@dataclasses.dataclass(frozen=True)
class DeviceTimes:
    """Where a run's time goes on a GPU: copying the inputs in from host arrays (H2D), computing with inputs and
    outputs in GPU memory, and copying the outputs back to the host (D2H), each step timed alone and synchronised,
    over `runs` sampled runs taken apart from the row's timed runs (after one unkept warm-up). trtexec reports
    this split; onnxruntime's own tools do not. A row on the CPU has none: its inputs and outputs are in host
    memory already, so the split does not apply (None, never zeros).

    `method`: how each step was taken (bench/engines.py), so a reader knows what was timed.
    """

    h2d_ms: tuple[float, ...]
    compute_ms: tuple[float, ...]
    d2h_ms: tuple[float, ...]
    input_bytes: int
    output_bytes: int
    method: str

    def __post_init__(self):
        if not self.h2d_ms or not len(self.h2d_ms) == len(self.compute_ms) == len(self.d2h_ms):
            raise ValueError("a device-time split needs the same number (> 0) of H2D, compute and D2H times")

    @classmethod
    def from_times(cls, h2d_s: Sequence[float], compute_s: Sequence[float], d2h_s: Sequence[float], *,
                   input_bytes: int, output_bytes: int, method: str) -> "DeviceTimes":
        return cls(h2d_ms=_ms_of(h2d_s), compute_ms=_ms_of(compute_s), d2h_ms=_ms_of(d2h_s),
                   input_bytes=input_bytes, output_bytes=output_bytes, method=method)

    @property
    def runs(self) -> int:
        return len(self.compute_ms)

    @property
    def means_ms(self) -> tuple[float, float, float]:
        """(H2D, compute, D2H), mean ms per run."""
        return statistics.fmean(self.h2d_ms), statistics.fmean(self.compute_ms), statistics.fmean(self.d2h_ms)

    @property
    def total_ms(self) -> float:
        return math.fsum(self.means_ms)

    @property
    def h2d_gb_per_s(self) -> float | None:
        """The input copy's bandwidth, GB/s (pageable host memory, as numpy arrays are)."""
        ms = self.means_ms[0]
        return self.input_bytes / ms / 1e6 if ms > 0 else None

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "h2d_ms": list(self.h2d_ms), "compute_ms": list(self.compute_ms),
                "d2h_ms": list(self.d2h_ms)}


@dataclasses.dataclass(frozen=True)
class Check:
    """One verdict of scripts/gpu-check.sh: e.g. CUDA outputs against CPU outputs within a tolerance.

    `passed` None: not run (and `detail` says why: --cpu-only, no CUDA); `value` and `limit` are the number
    measured and the bound it was held to, where the check has them."""

    name: str
    passed: bool | None
    value: float | None = None
    limit: float | None = None
    detail: str = ""
