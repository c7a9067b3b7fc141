"""`bench tune`: which settings to use for this model on this machine, found by measuring them.

    bench tune --model runs/alexnet/alexnet.onnx                     # the highest throughput
    bench tune --model m.onnx --batch 1,4,16 --latency-budget-ms 25  # the highest throughput with p99 <= 25 ms
    bench throughput --config runs/alexnet/alexnet.tuned.json        # run what it found (bench/tuned.py)

The right setting depends on the machine and the model: on a busy machine idle threads should
sleep, on a quiet one spin-waiting can win; a small model may run best on one thread. So the
tune measures. What it varies (the axes): the model variant (the model, "float32", and the
float16/int8 files the export writes beside it, where present), the provider (each one
--provider lists that really runs here), intra-op threads (onnxruntime's default, 1, 2, 4, ...
and every usable CPU) with and without spin-waiting (one axis: they interact), the graph
optimisation level, the execution mode, and the batch size (--batch; default the model's fixed
batch, else 1,8,32).

A full grid is 3 x 6 x 4 x 2 x batches points on 2 CPUs; this finishes in minutes instead:
 1. the starting point (the benchmark's defaults, or the session options given) at every batch
    size, each a short measurement (tune's --min-time default 0.3 s, --min-iterations 10);
 2. coordinate descent from the best of those: one axis at a time, every value of it with the
    other axes fixed; a value replaces the current one only if it beats it by more than
    --min-gain (3%: less is noise here); passes until one changes nothing (at most --passes);
 3. confirmation: short measurements are noisy on a shared machine (a lucky point can hold the
    search), so the --candidates best points within the budget (the winner first) and the
    starting point at each of their batch sizes take turns for --rounds rounds, each in a process
    of its own (as in `bench compare`), --confirm-time seconds each in all. The fastest confirmed
    setting within the budget is the answer, the starting point included: the tune never hands
    back a setting slower than a starting point that met the budget in the same confirmation.
With --latency-budget-ms, the search counts a point as within the budget by its p90 (a short
measurement's p99 is its slowest run, decided by one preemption; p90 is what a few runs can
estimate), the confirmation by its p99 over hundreds of runs. Within the budget beats over it,
then the faster wins (over it: the lower p90). Every point tried is kept
in the result; the table shows the Pareto front of throughput vs p99 (points that no other point
beats in both). The chosen setting is written for `--config` (default: STEM.tuned.json beside the
model). A budget no point met is bad input: one line with the best p99 found, exit 2, no files.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from bench import tuned
from bench.check import paired_comparison
from bench.compare import Contender, EngineProcesses, row_of
from bench.engines import EngineRecord, OnnxEngine
from bench.inputs import InputConfig, default_batch
from bench.measure import engine_result
from bench.results import BenchResult, Row, Setting, Tune, TunePoint
from bench.runner import RunConfig, Stage, measure
from bench.session import EXECUTION_MODES, GRAPH_OPTIMIZATION, SessionConfig
from toolkit.cli import UsageError
from toolkit.environment import cpu_info, usable_cpus
from toolkit.files import sha256_file
from toolkit.runs import VARIANTS, variant_path

SPINNING = "session.intra_op.allow_spinning"
# Threads and spin-waiting are one axis: they interact (onnxruntime's own defaults, pinned threads that
# spin, can win where neither change alone does), and together they are only 2 x (thread counts) values.
AXES = ("variant", "provider", "threading", "graph_optimization", "execution_mode", "batch")
DEFAULT_BATCHES = (1, 8, 32)
BASE_VARIANT = "float32"
DEFAULTS_LABEL = "defaults"
# Short measurements for the search; `bench tune`'s defaults for --warmup, --min-time, --min-iterations.
# 10 runs at least: their p90 rests on the slowest run for a tenth only.
SEARCH_RUN = RunConfig(warmup=2, min_time=0.3, min_iterations=10)


def thread_counts(cpus: int) -> tuple[int, ...]:
    """0 (onnxruntime's default: one per physical core, pinned), 1, 2, 4, ... and every usable CPU."""
    counts = {0, cpus}
    power = 1
    while power < cpus:
        counts.add(power)
        power *= 2
    return tuple(sorted(counts))


@dataclasses.dataclass(frozen=True)
class Space:
    """The values each axis may take."""

    variants: tuple[tuple[str, str], ...]   # (label, file)
    providers: tuple[str, ...]
    threads: tuple[int, ...]
    batches: tuple[int, ...]

    def values(self, axis: str) -> Sequence[Any]:
        return {"variant": [label for label, _ in self.variants], "provider": self.providers,
                "threading": [(n, spin) for n in self.threads for spin in (False, True)],
                "graph_optimization": tuple(GRAPH_OPTIMIZATION), "execution_mode": tuple(EXECUTION_MODES),
                "batch": self.batches}[axis]

    def move(self, setting: Setting, axis: str, value: Any) -> Setting:
        if axis == "variant":
            return dataclasses.replace(setting, variant=value, model=dict(self.variants)[value])
        if axis == "threading":
            return dataclasses.replace(setting, intra_op_threads=value[0], spinning=value[1])
        return dataclasses.replace(setting, **{axis: value})


def feasible(latency_ms: float, budget_ms: float | None) -> bool:
    return budget_ms is None or latency_ms <= budget_ms


def rank(point: TunePoint | None, budget_ms: float | None) -> tuple[int, float]:
    """Larger is better: (2, throughput) within the budget, (1, -p90) over it, (0, 0) where it did not run.
    The search judges the budget by p90 (see TunePoint); the confirmation by p99."""
    if point is None:
        return (0, 0.0)
    if feasible(point.p90_ms, budget_ms):
        return (2, point.samples_per_second)
    return (1, -point.p90_ms)


def improves(candidate: TunePoint | None, current: TunePoint | None, budget_ms: float | None,
             min_gain: float) -> bool:
    """Whether `candidate` should replace `current`: a better class (it runs; it meets the budget), or in
    the same class better by more than `min_gain` of current's value (throughput, or p90 over the budget)."""
    (new_class, new), (old_class, old) = rank(candidate, budget_ms), rank(current, budget_ms)
    if new_class != old_class:
        return new_class > old_class
    return new_class > 0 and new > old + abs(old) * min_gain


def coordinate_descent(start: Setting, space: Space, evaluate: Callable[[Setting], TunePoint | None], *,
                       budget_ms: float | None, min_gain: float, passes: int) -> Setting:
    """From `start`, one axis at a time, each value tried with the others fixed; `evaluate` caches."""
    current = start
    for _ in range(passes):
        moved = False
        for axis in AXES:
            for value in space.values(axis):
                candidate = space.move(current, axis, value)
                if candidate != current and improves(evaluate(candidate), evaluate(current), budget_ms, min_gain):
                    current, moved = candidate, True
        if not moved:
            break
    return current


class Evaluator:
    """Measures settings in this process, one session alive at a time (kept while only the batch
    changes, so an idle session's threads never compete with the measured one); every point is kept.

    `progress(description, index, total, run)` (bench.report.MeasureProgress.step) announces each new
    point as a step of its phase (`begin`): the starting point's batch sizes, then the search, whose
    points are counted against the most it can take."""

    def __init__(self, base: SessionConfig, inputs: InputConfig, run: RunConfig, progress: Stage | None = None):
        # Not strict: a provider that falls back is recorded as unusable, not an error.
        self.base = dataclasses.replace(base, strict=False)
        self.inputs = inputs
        self.run = run
        self.progress = progress
        self.phase = "defaults"
        self.points: dict[Setting, TunePoint | None] = {}
        self.unusable: dict[str, str] = {}   # provider -> why
        self._open: tuple[Setting, OnnxEngine] | None = None
        self._phase_start, self._phase_points = 0, 1

    def begin(self, phase: str, points: int) -> None:
        """A phase of at most `points` new points: "defaults" (the starting point) or "search"."""
        self.phase, self._phase_start, self._phase_points = phase, len(self.points), max(points, 1)

    def _announce(self, setting: Setting):
        """The step of the point about to be measured, and the timing loop's callback."""
        if self.progress is None:
            return None
        done = len(self.points) - self._phase_start
        what = "starting point" if self.phase == "defaults" else "search"
        rates = [p.samples_per_second for p in self.points.values() if p is not None]
        best = f" (fastest so far {max(rates):,.1f} samples/s)" if rates else ""
        return self.progress(f"tune: {what} {done + 1}/{self._phase_points}{best}: {setting.describe()}",
                             min(done, self._phase_points - 1), self._phase_points, self.run)

    def session_config(self, setting: Setting) -> SessionConfig:
        entries = {**dict(self.base.entries), SPINNING: "1" if setting.spinning else "0"}
        return dataclasses.replace(self.base, providers=(setting.provider,),
                                   intra_op_threads=setting.intra_op_threads,
                                   graph_optimization=setting.graph_optimization,
                                   execution_mode=setting.execution_mode, entries=tuple(entries.items()))

    def engine(self, setting: Setting) -> OnnxEngine:
        key = dataclasses.replace(setting, batch=0)
        if self._open is None or self._open[0] != key:
            self.close()  # the previous session and its threads go before the next is made
            self._open = (key, OnnxEngine.open(setting.model, self.session_config(setting)))
        return self._open[1]

    def close(self) -> None:
        self._open = None

    def __call__(self, setting: Setting) -> TunePoint | None:
        if setting not in self.points:
            step = self._announce(setting)
            engine = self.engine(setting)
            point = None
            if engine.fallback:
                self.unusable[setting.provider] = engine.fallback
            else:
                prepared = engine.prepare(setting.batch, self.inputs)
                times = measure(engine.step(prepared), self.run, step)
                row = engine.record().row("tune", prepared.samples, times)
                point = TunePoint(setting=setting, samples_per_second=row.throughput.samples_per_second,
                                  p99_ms=row.latency.p99, p90_ms=row.latency.p90, iterations=row.latency.count,
                                  phase=self.phase)
            self.points[setting] = point
        return self.points[setting]


def _no_setting_met(points: Sequence[TunePoint], rows: Sequence[Row], budget_ms: float | None) -> UsageError:
    best_point = min(points, key=lambda p: p.p99_ms)
    best = (best_point.p99_ms, best_point.setting.describe())
    for row in rows:
        if row.latency.p99 < best[0]:
            best = (row.latency.p99, f"{row.label}, confirmed")
    return UsageError(f"no setting met --latency-budget-ms {budget_ms:g}: the best p99 found was {best[0]:.3f} ms "
                      f"({best[1]}): raise the budget, or try smaller --batch sizes or another --provider")


@dataclasses.dataclass(frozen=True)
class TuneOptions:
    budget_ms: float | None = None
    passes: int = 2
    min_gain: float = 0.03
    candidates: int = 3
    rounds: int = 3
    confirm_time: float = 3.0

    def __post_init__(self):
        if self.budget_ms is not None and not self.budget_ms > 0:
            raise UsageError(f"--latency-budget-ms {self.budget_ms:g} must be > 0 milliseconds")
        if self.passes < 1:
            raise UsageError(f"--passes {self.passes} must be >= 1")
        if not 0 <= self.min_gain < 1:
            raise UsageError(f"--min-gain {self.min_gain:g} must be in [0, 1), e.g. 0.03 for 3%")
        if self.candidates < 1:
            raise UsageError(f"--candidates {self.candidates} must be >= 1")
        if self.rounds < 1:
            raise UsageError(f"--rounds {self.rounds} must be >= 1")
        if not self.confirm_time > 0:
            raise UsageError(f"--confirm-time {self.confirm_time:g} must be > 0 seconds")


def _starting_point(model: Path, batches: Sequence[int] | None, base: SessionConfig, inputs: InputConfig,
                    evaluate: Evaluator) -> tuple[Setting, tuple[int, ...]]:
    """The session options given (or the defaults) on the model itself, measured at every batch size, on the
    first provider of --provider that really runs here; and the batch sizes (default: the model's fixed one)."""
    start = Setting(variant=BASE_VARIANT, model=str(model), provider=base.providers[0],
                    intra_op_threads=base.intra_op_threads, spinning=dict(base.entries).get(SPINNING) == "1",
                    graph_optimization=base.graph_optimization, execution_mode=base.execution_mode, batch=0)
    if batches is None:
        fixed = default_batch(evaluate.engine(start).specs, 0, dict(inputs.shapes))
        batches = (fixed,) if fixed else DEFAULT_BATCHES
    evaluate.begin("defaults", len(batches) * len(base.providers))
    for provider in base.providers:
        start = dataclasses.replace(start, provider=provider)
        # Every batch size is measured (a list, not a short-circuiting generator): each is a point of the front.
        if any([evaluate(dataclasses.replace(start, batch=b)) is not None for b in batches]):
            return start, tuple(batches)
    raise UsageError(f"no provider of --provider {','.join(base.providers)} runs here "
                     f"({'; '.join(evaluate.unusable.values())}): pass one that does, e.g. --provider cpu")


def candidates(points: Sequence[TunePoint], winner: Setting, budget_ms: float | None, count: int) -> list[Setting]:
    """The search's winner, then the fastest other points within the budget: `count` settings to confirm."""
    ranked = sorted((p for p in points if feasible(p.p90_ms, budget_ms)), key=lambda p: -p.samples_per_second)
    return [winner, *[p.setting for p in ranked if p.setting != winner]][:count]


def labelled(confirming: Sequence[Setting], start: Setting) -> dict[str, Setting]:
    """The settings to confirm by label: the starting point at each candidate's batch size ("defaults", or
    "defaults @ B" where there are several), then each candidate that is not one of those ("candidate N",
    N its rank in the search)."""
    batches = sorted({c.batch for c in confirming})
    defaults = {DEFAULTS_LABEL if len(batches) == 1 else f"{DEFAULTS_LABEL} @ {batch}":
                dataclasses.replace(start, batch=batch) for batch in batches}
    return {**defaults, **{f"candidate {index}": setting for index, setting in enumerate(confirming, 1)
                           if setting not in defaults.values()}}


@dataclasses.dataclass(frozen=True)
class Confirmed:
    """What the confirmation measured: a row per setting (labelled as given), and the choice."""

    rows: list[Row]
    records: dict[str, EngineRecord]
    chosen: str                     # the label of the fastest row within the budget


def confirm(settings: dict[str, Setting], evaluate: Evaluator, inputs: InputConfig, run: RunConfig,
            options: TuneOptions, progress: Stage | None) -> Confirmed:
    """At each batch size, its settings take turns for `options.rounds` rounds, each in a process of its own
    (`progress` announces each turn, as in `bench compare`).

    None within the budget: UsageError naming the best p99 found."""
    run = dataclasses.replace(run, min_time=options.confirm_time,
                              min_iterations=max(run.min_iterations, options.rounds))
    rows, records = [], {}
    steps, done = len(settings) * options.rounds, 0
    for batch in sorted({s.batch for s in settings.values()}):
        group = [Contender(label, Path(s.model), session=evaluate.session_config(s))
                 for label, s in settings.items() if s.batch == batch]
        with EngineProcesses(group, evaluate.base, inputs) as processes:
            turns = processes.take_turns(batch, run, options.rounds, progress, name="tune: confirming", done=done,
                                         steps=steps)
        done += len(group) * options.rounds
        for contender in group:
            rows.append(row_of(contender.label, turns[contender.label]))
            records[contender.label] = turns[contender.label][-1].record
    within = [r for r in rows if feasible(r.latency.p99, options.budget_ms)]
    if not within:
        raise _no_setting_met([p for p in evaluate.points.values() if p is not None], rows, options.budget_ms)
    best = max(within, key=lambda r: r.throughput.samples_per_second)
    return Confirmed(rows=rows, records=records, chosen=best.label)


def over_defaults(rows: Sequence[Row], settings: dict[str, Setting],
                  start: Setting) -> tuple[list[Row], dict[int, Row]]:
    """Each confirmed row with its ratio: its throughput over the starting point's at the same batch size
    (settings: the rows' settings by label); and the starting point's rows by batch size."""
    defaults = {r.batch: r for r in rows if settings[r.label] == dataclasses.replace(start, batch=r.batch)}
    return [dataclasses.replace(r, ratio=r.throughput.samples_per_second
                                / defaults[r.batch].throughput.samples_per_second) for r in rows], defaults


def run_tune(model: Path, *, batches: Sequence[int] | None, base: SessionConfig, inputs: InputConfig, run: RunConfig,
             options: TuneOptions, output: Path, progress: Stage | None) -> BenchResult:
    """Search, confirm, write the settings file to `output`; the result (rows: the confirmation, each
    candidate with a paired verdict against the defaults at its batch size).

    `progress(description, index, total[, run])` (bench.report.MeasureProgress.step) announces each
    point of the search and each turn of the confirmation."""
    started = time.perf_counter()
    variants = ((BASE_VARIANT, str(model)), *((v, str(variant_path(model, v))) for v in VARIANTS
                                               if variant_path(model, v).is_file()))
    evaluate = Evaluator(base, inputs, run, progress)
    start, batches = _starting_point(model, batches, base, inputs, evaluate)
    space = Space(variants=variants, providers=base.providers, threads=thread_counts(usable_cpus()),
                  batches=batches)
    evaluate.begin("search", options.passes * sum(len(space.values(axis)) - 1 for axis in AXES))
    best_start = max((dataclasses.replace(start, batch=b) for b in batches),
                     key=lambda s: rank(evaluate(s), options.budget_ms))
    winner = coordinate_descent(best_start, space, evaluate, budget_ms=options.budget_ms,
                                min_gain=options.min_gain, passes=options.passes)
    evaluate.close()
    search_seconds = time.perf_counter() - started
    points = tuple(p for p in evaluate.points.values() if p is not None)
    if not any(feasible(p.p90_ms, options.budget_ms) for p in points):
        raise _no_setting_met(points, (), options.budget_ms)
    settings = labelled(candidates(points, winner, options.budget_ms, options.candidates), start)
    confirmed = confirm(settings, evaluate, inputs, run, options, progress)
    chosen = settings[confirmed.chosen]
    baseline = dataclasses.replace(start, batch=chosen.batch)
    rows, defaults_rows = over_defaults(confirmed.rows, settings, start)
    base_rate = {batch: r.throughput.samples_per_second for batch, r in defaults_rows.items()}
    # The same interleaved rounds as `bench compare`: each candidate's paired verdict against the defaults.
    comparisons = [paired_comparison(defaults_rows[r.batch], r) for r in confirmed.rows
                   if r is not defaults_rows[r.batch]]
    chosen_row = next(r for r in rows if r.label == confirmed.chosen)
    tuned.write(output, tuned.TunedConfig(
        model=model, model_sha256=sha256_file(model), run=Path(chosen.model),
        run_sha256=sha256_file(chosen.model), variant=chosen.variant, batch=chosen.batch,
        provider=chosen.provider, intra_op_threads=chosen.intra_op_threads, inter_op_threads=base.inter_op_threads,
        graph_optimization=chosen.graph_optimization, execution_mode=chosen.execution_mode,
        session_entries=evaluate.session_config(chosen).entries, latency_budget_ms=options.budget_ms,
        measured={"samples_per_second": chosen_row.throughput.samples_per_second, "p99_ms": chosen_row.latency.p99,
                  "defaults_samples_per_second": base_rate[chosen.batch], "ratio": chosen_row.ratio},
        machine={"cpu": cpu_info()["model"], "usable_cpus": usable_cpus()}))
    notes = [f"search: {len(evaluate.points)} points in {search_seconds:.0f} s, each {run.min_time:g} s and "
             f">= {run.min_iterations} runs after {run.warmup} warm-up; confirmation: {options.rounds} interleaved "
             f"rounds, {options.confirm_time:g} s per setting, each in a process of its own",
             "ratio: throughput over the starting point's (defaults) at the same batch size",
             f"written: {output} (use it with --config)"]
    notes.extend(f"provider {p} not usable here: {why}" for p, why in evaluate.unusable.items())
    tune = Tune(points=points, budget_ms=options.budget_ms, defaults=baseline, chosen=chosen,
                config_path=str(output), search_seconds=search_seconds, confirmed=tuple(settings.items()))
    config = {"model": str(model), "batches": list(batches), "session": dataclasses.asdict(base),
              "inputs": dataclasses.asdict(inputs), "run": dataclasses.asdict(run), **dataclasses.asdict(options),
              "output": str(output)}
    result = engine_result("tune", confirmed.records[confirmed.chosen], rows, config, notes,
                           comparisons=comparisons)
    return dataclasses.replace(result, tune=tune)
