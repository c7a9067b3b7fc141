"""`bench load --engine loadgen`: the same scenarios through MLPerf's own LoadGen (`mlcommons-loadgen`),
the reference a user can cite beside bench's own generator (bench/load.py, the default).

    bench load --engine loadgen --model m.onnx --scenario single-stream --json ss.json
    bench load --engine loadgen --model m.onnx --scenario server --qps 200 --latency-bound-ms 20 --json s.json
    bench load --engine loadgen --model m.onnx --scenario server --find-peak --latency-bound-ms 20 --json p.json
    bench load --engine loadgen --model m.onnx --scenario offline --batch 32 --json off.json
    bench report ss.json

The system under test is the one bench's own generator drives: the same onnxruntime session, the
same `--concurrency` worker threads, each on feeds of its own, the same warm-up (bench/load.py
`begin`). LoadGen decides when each query is issued and judges the test; the workers only run
what it issues and report each completion back (`QuerySamplesComplete`):
  * single-/multi-stream: a query of 1 (multi-stream: --batch) samples at a time, one run each;
  * server: queries of one sample at LoadGen's Poisson times, run by the first free worker
    (--batch must be 1); LoadGen's `server_max_async_queries` is bench's overload limit;
  * offline: one query of every sample, run in batches of --batch by the workers.
LoadGen's settings come from bench's (`test_settings`): the minimum duration and query count, the
bound, the QPS; the expected latency of single-/multi-stream is the fastest warm-up query's
(LoadGen generates twice the minimum duration's queries at that rate); offline's expected
samples/s is --expected-qps or bench's pilot. Each test leaves LoadGen's official
`mlperf_log_summary.txt` and `mlperf_log_detail.txt` in a directory of its own beside the
--json file (`STEM.mlperf/NN-SCENARIO[-QPSqps]/`, written under a temporary name and renamed
when the last test is done). The verdict, the metric and the reasons of each row are LoadGen's,
read from its detail log's `:::MLLOG` lines (`LoadGenLog`); the rest of the row (where the time
went, samples/s) is from what the workers saw: the issue time is when LoadGen handed a query over,
so LoadGen's own lateness against its schedule is not in the "late" column (zero for server).
--find-peak runs bench's search (LoadGen's, bench/scenarios.py) with a LoadGen test per point,
judged by LoadGen's performance constraint, and re-checks the peak as bench's own search does.
"""
from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import queue
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from bench.scenarios import CLOSED_LOOP, MULTI_STREAM, OFFLINE, SERVER, SINGLE_STREAM, LoadRow, LoadSettings
from toolkit.cli import UsageError

ENGINE = "loadgen"
ENGINES = ("bench", ENGINE)
SUMMARY, DETAIL = "mlperf_log_summary.txt", "mlperf_log_detail.txt"
MLLOG = ":::MLLOG "
# Sample indices LoadGen draws from; the workers cycle through their own feeds whatever the index.
QSL_SAMPLES = 1024
OVERLOADED = "Too many outstanding queries"


def logs_dir(json_path: str | None) -> Path:
    """Where a --json file's LoadGen logs go: STEM.mlperf beside it."""
    if json_path is None:
        raise UsageError("--engine loadgen keeps LoadGen's official logs beside the result: pass --json PATH "
                         "(they go to PATH's STEM.mlperf/)")
    path = Path(json_path)
    return path.with_name(f"{path.stem}.mlperf")


@dataclasses.dataclass(frozen=True)
class LoadGenLog:
    """LoadGen's own verdict of one test, from its mlperf_log_detail.txt; `summary`/`detail`: the log
    files, relative to the --json file's directory; `results`: every `result_*`, `early_stopping*` and
    `generated_*` key LoadGen logged, as it logged them (latencies in ns)."""

    valid: bool
    metric: str
    metric_value: float
    reasons: tuple[str, ...]
    overloaded: bool
    summary: str
    detail: str
    results: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "LoadGenLog":
        return cls(**{**{f.name: obj[f.name] for f in dataclasses.fields(cls)}, "reasons": tuple(obj["reasons"])})


def _metric_key(settings: LoadSettings) -> tuple[str, float]:
    """The detail log's key of the scenario's metric, and its factor to bench's unit (ms or samples/s)."""
    percent = f"{settings.percentile * 100:.2f}"
    return {SINGLE_STREAM: (f"result_{percent}_percentile_latency_ns", 1e-6),
            MULTI_STREAM: (f"result_{percent}_percentile_per_query_latency_ns", 1e-6),
            SERVER: (f"result_{percent}_percentile_latency_ns", 1e-6),
            OFFLINE: ("result_samples_per_second", 1.0)}[settings.scenario]


def read_detail(text: str) -> tuple[dict[str, Any], list[str]]:
    """The `:::MLLOG {json}` lines of a detail log: the last value of each key, and every error's text."""
    values: dict[str, Any] = {}
    errors: list[str] = []
    for line in text.splitlines():
        if not line.startswith(MLLOG):
            continue
        entry = json.loads(line[len(MLLOG):])
        values[entry["key"]] = entry["value"]
        if entry.get("metadata", {}).get("is_error"):
            errors.append(str(entry["value"]))
    return values, errors


def parse_log(settings: LoadSettings, directory: Path, relative_to: Path) -> LoadGenLog:
    """LoadGen's verdict of the test whose logs are in `directory`; ValueError if the log lacks it."""
    from bench.scenarios import metric_name

    values, errors = read_detail((directory / DETAIL).read_text())
    key, factor = _metric_key(settings)
    if "result_validity" not in values or key not in values:
        raise ValueError(f"{directory / DETAIL} has no result_validity or {key}: LoadGen did not finish the test")
    overloaded = any(OVERLOADED in e for e in errors)
    reasons = [f"LoadGen: {e}" for e in errors]
    checks = (("result_perf_constraints_met", "performance constraints (the latency bound)"),
              ("result_min_duration_met", "min duration"), ("result_min_queries_met", "min query count"),
              ("early_stopping_met", "early stopping"))
    reasons += [f"LoadGen: {what} not met" for flag, what in checks if values.get(flag) is False]
    if values.get("result_invalid_reason"):
        reasons.append(f"LoadGen's recommendation: {values['result_invalid_reason'].strip()}")
    if values.get("early_stopping_met") is False and values.get("early_stopping_result"):
        reasons.append(f"LoadGen's early stopping: {values['early_stopping_result'].strip()}")
    kept = {k: v for k, v in values.items() if k.startswith(("result_", "early_stopping", "generated_"))}
    return LoadGenLog(valid=values["result_validity"] == "VALID", metric=metric_name(settings.scenario),
                      metric_value=float(values[key]) * factor, reasons=tuple(reasons), overloaded=overloaded,
                      summary=str((directory / SUMMARY).relative_to(relative_to)),
                      detail=str((directory / DETAIL).relative_to(relative_to)), results=kept)


def test_settings(settings: LoadSettings, expected_latency_s: float, expected_qps: float | None):
    """LoadGen's TestSettings for bench's `settings` (see the module docstring)."""
    import mlperf_loadgen as lg

    from bench.scenarios import max_outstanding

    scenario = settings.scenario
    ts = lg.TestSettings()
    ts.scenario = {SINGLE_STREAM: lg.TestScenario.SingleStream, MULTI_STREAM: lg.TestScenario.MultiStream,
                   SERVER: lg.TestScenario.Server, OFFLINE: lg.TestScenario.Offline}[scenario]
    ts.mode = lg.TestMode.PerformanceOnly
    ts.min_duration_ms = round(settings.duration_s * 1000)
    ts.min_query_count = settings.queries
    expected_ns = max(1.0, expected_latency_s * 1e9)
    ts.single_stream_expected_latency_ns = expected_ns
    ts.multi_stream_expected_latency_ns = expected_ns
    ts.multi_stream_samples_per_query = settings.batch
    if scenario == SERVER:
        ts.server_target_qps = settings.target_qps
        ts.server_target_latency_ns = round(settings.bound_ms * 1e6)
        ts.server_max_async_queries = max_outstanding(settings.target_qps, settings.bound_ms, settings.concurrency)
    if scenario == OFFLINE:
        ts.offline_expected_qps = expected_qps
    return ts


def check_settings(settings: LoadSettings) -> None:
    """What LoadGen's scenarios cannot take; UsageError naming the fix."""
    if settings.until_stable is not None:
        raise UsageError("--until-stable is bench's own: LoadGen's tests end at their minimums; drop --until-stable "
                         "or use --engine bench")
    if settings.scenario == SERVER and settings.batch != 1:
        raise UsageError(f"--batch {settings.batch}: LoadGen's server scenario issues one sample per query: use "
                         "--batch 1 (or --engine bench for batched server queries)")


class _SUT:
    """The system under test: LoadGen's IssueQuery puts each query's samples, cut into runs of at most a
    batch, on a queue; the worker threads run them on their own feeds and report them complete. Per run it
    records when LoadGen issued it, when a worker started it and when it was done (perf_counter s)."""

    def __init__(self, run: Callable[[Any], Any], prepared: Sequence[Any], batch: int):
        self.batch = batch
        self.tasks: queue.SimpleQueue = queue.SimpleQueue()
        self.times: list[tuple[float, float, float]] = []   # list.append is atomic: workers share it
        self.errors: list[BaseException] = []
        self.threads = [threading.Thread(target=self._work, args=(run, itertools.cycle(p.feeds)), daemon=True)
                        for p in prepared]

    def issue(self, samples) -> None:
        now = time.perf_counter()
        for start in range(0, len(samples), self.batch):
            self.tasks.put((now, [s.id for s in samples[start:start + self.batch]]))

    def _work(self, run, feeds: Iterator[Any]) -> None:
        import mlperf_loadgen as lg

        while (task := self.tasks.get()) is not None:
            issued, ids = task
            started = time.perf_counter()
            try:
                run(next(feeds))
            except BaseException as exc:  # handed to the main thread, which re-raises it after the test
                self.errors.append(exc)
            done = time.perf_counter()
            self.times.append((issued, started, done))
            # Completed even after an error, or LoadGen would wait for the samples for ever.
            lg.QuerySamplesComplete([lg.QuerySampleResponse(i, 0, 0) for i in ids])

    @contextlib.contextmanager
    def running(self):
        for thread in self.threads:
            thread.start()
        try:
            yield self
        finally:
            for _ in self.threads:
                self.tasks.put(None)
            for thread in self.threads:
                thread.join()
        if self.errors:
            raise self.errors[0]


def run_test(run, prepared, settings: LoadSettings, ts, directory: Path):
    """One LoadGen test, its logs in `directory`; the (issued, started, done) times of every run, sorted by issue."""
    import mlperf_loadgen as lg

    directory.mkdir(parents=True)
    log_settings = lg.LogSettings()
    log_settings.log_output.outdir = str(directory)
    log_settings.log_output.copy_summary_to_stdout = False
    log_settings.enable_trace = False
    sut_state = _SUT(run, prepared, prepared[0].samples if settings.scenario == OFFLINE else settings.batch)
    sut = lg.ConstructSUT(sut_state.issue, lambda: None)
    qsl = lg.ConstructQSL(QSL_SAMPLES, QSL_SAMPLES, lambda samples: None, lambda samples: None)
    try:
        with sut_state.running():
            # An audit.config in the current directory would override these settings: LoadGen reads the
            # name given here, which does not exist.
            lg.StartTestWithLogSettings(sut, qsl, ts, log_settings, str(directory / "no-audit.config"))
    finally:
        lg.DestroyQSL(qsl)
        lg.DestroySUT(sut)
    return sorted(sut_state.times)


def to_row(settings: LoadSettings, times, log: LoadGenLog, samples: int, resources) -> LoadRow:
    """The workers' times as a bench LoadRow (see the module docstring for what its columns mean here)."""
    from bench.scenarios import Timeline

    first = times[0][0]
    issued = [t[0] - first for t in times]
    started = [t[1] - first for t in times]
    done = [t[2] - first for t in times]
    if settings.scenario in CLOSED_LOOP:
        intended = [0.0, *done[:-1]]
    elif settings.scenario == OFFLINE:
        intended = issued
    else:
        intended = issued      # LoadGen's schedule is its own: its lateness is in its log, not here
    timeline = Timeline.of(samples, intended, issued, started, done)
    scheduled = log.results.get("generated_query_count") if log.overloaded else None
    return LoadRow.from_timeline(settings, timeline, overloaded=log.overloaded,
                                 scheduled=None if scheduled is None else max(int(scheduled), len(times)),
                                 resources=resources)


@contextlib.contextmanager
def staged(final: Path) -> Iterator[Path]:
    """A temporary directory beside `final`, renamed onto it (replacing an older one) only if the block succeeds."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = final.with_name(f".{final.name}.old")
    shutil.rmtree(old, ignore_errors=True)     # left by a run killed between the two renames
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def run_loadgen(engine, settings: LoadSettings, inputs, *, warmup: int, find_peak: bool, progress,
                logs: Path):
    """`bench load --engine loadgen`: bench/load.py's start, then each test through LoadGen (a LoadOutcome
    whose `loadgen` holds LoadGen's verdict of each row, in order)."""
    from bench import load
    from bench.resources import clocks

    check_settings(settings)
    start = load.begin(engine, settings, inputs, warmup=warmup, find_peak=find_peak, progress=progress)
    settings, notes = start.settings, start.notes
    verdicts: dict[int, LoadGenLog] = {}
    rows: list[LoadRow] = []
    with staged(logs) as tmp:
        def test(at: LoadSettings, description: str, expected_qps: float | None = None) -> LoadRow:
            name = f"{len(verdicts) + 1:02d}-{at.scenario}" + (f"-{at.qps:g}qps" if at.scenario == SERVER else "")
            progress(f"load: {ENGINE} {at.label()}{description}", 0, 1)
            begun = clocks()
            times = run_test(start.run, start.prepared, at,
                             test_settings(at, start.calibration.min_ms / 1000, expected_qps), tmp / name)
            log = parse_log(at, tmp / name, tmp)
            log = dataclasses.replace(log, summary=f"{logs.name}/{log.summary}", detail=f"{logs.name}/{log.detail}")
            samples = at.batch if at.scenario != SERVER else 1
            row = to_row(at, times, log, samples, start.used(begun))
            verdicts[id(row)] = log
            rows.append(row)
            return row

        check = None
        if settings.scenario == SERVER and find_peak:
            found, check = load.search_peak(lambda qps, d: test(settings.at_qps(qps), d),
                                            lambda row: _passes(verdicts[id(row)]), settings, start.calibration,
                                            notes)
        elif settings.scenario == OFFLINE:
            expected = settings.expected_qps or load.offline_rate(start.run, start.prepared, start.calibration)
            notes.append(f"offline: LoadGen's offline_expected_qps {expected:,.1f} samples/s "
                         f"({'from --expected-qps' if settings.expected_qps else 'from a pilot'}, x1.1 by LoadGen)")
            found = [test(settings, "", expected)]
        else:
            found = [test(settings, "")]
    notes.append(f"engine: MLPerf LoadGen {version()}; its logs: {logs}/, a directory per test")
    # search_peak returns the rows in the order they ran (the peak marked on a copy): LoadGen's logs pair by order.
    return load.LoadOutcome(rows=tuple(found), calibration=start.calibration, notes=tuple(notes),
                            warnings=tuple(load.warnings_of(found)), peak_check=check,
                            loadgen=tuple(verdicts[id(r)] for r in rows))


def _passes(log: LoadGenLog) -> bool:
    """Find-peak's test by LoadGen's judgement: its latency constraint met, and it did not end early."""
    return not log.overloaded and log.results.get("result_perf_constraints_met") is True


def version() -> str:
    from importlib.metadata import version as installed

    return installed("mlcommons-loadgen")
