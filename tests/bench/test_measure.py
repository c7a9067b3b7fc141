"""Measuring engines: rows from the timing loop, results from engine records, the harness-overhead check."""
import math
import statistics
from pathlib import Path

import pytest

from bench import measure
from bench.engines import Engine, EngineRecord, OnnxEngine, Prepared
from bench.inputs import InputConfig, InputSpec
from bench.measure import engine_result, measure_engine, measure_overhead
from bench.results import Row
from bench.runner import RunConfig
from bench.session import SessionConfig
from toolkit.cli import UsageError

QUICK_RUN = RunConfig(warmup=1, min_time=0.05, min_iterations=5)


def test_measure_engine_times_the_prepared_batch(helper_models):
    engine = OnnxEngine.open(helper_models["multi"], SessionConfig(intra_op_threads=1))
    row = measure_engine(engine, batch=3, inputs=InputConfig(dims=(("seq", 2),), shapes=(("scale", (1,)),)),
                         run=QUICK_RUN)
    assert (row.label, row.engine, row.batch, row.providers) == ("onnxruntime", "onnxruntime", 3,
                                                                 ("CPUExecutionProvider",))
    assert row.latency.count == len(row.times_ms) >= 5


def test_engine_result_takes_the_main_record_and_every_runtime():
    spec = InputSpec("x", "tensor(float)", ("batch", 3))
    main = EngineRecord("onnxruntime", "m.onnx", (spec,), ("y",), ("cuda",), ("CPUExecutionProvider",),
                        "CUDA unavailable, ran on CPU", {"version": "1.31.1"})
    variant = EngineRecord("onnxruntime", "m.int8.onnx", (spec,), ("y",), ("cuda",), ("CPUExecutionProvider",),
                           None, {"version": "from the variant"})
    tf = EngineRecord("tensorflow", "model.keras", (spec,), ("y",), (), ("TensorFlow CPU",), None,
                      {"version": "2.21.0"})
    result = engine_result("compare", main, [main.row("m", 2, [0.001])], {}, ["a note"], [variant, tf])
    assert result.environment["onnxruntime"] == {"version": "1.31.1"}
    assert result.environment["tensorflow"] == {"version": "2.21.0"} and result.environment["cpu"]["model"]
    assert result.model == {"path": "m.onnx", "inputs": [{"name": "x", "dtype": "tensor(float)",
                                                          "shape": ["batch", 3]}], "outputs": ["y"]}
    assert (result.requested_providers, result.providers, result.fallback) == (
        ("cuda",), ("CPUExecutionProvider",), "CUDA unavailable, ran on CPU")
    assert result.rows[0].batch == 2 and result.notes == ("a note",)


def test_bare_loop_times_every_run(monkeypatch):
    """Each run's own time, from a clock that only the runs advance (1 ms, then 3 ms, cycled)."""
    now = [0.0]
    monkeypatch.setattr(measure.time, "perf_counter", lambda: now[0])

    def run(feed):
        now[0] += feed
    assert measure.bare_loop_times(run, [0.001, 0.003], 5) == pytest.approx([0.001, 0.003, 0.001, 0.003, 0.001])


def test_overhead_rows_pair_the_runs_of_each_round(helper_models):
    engine = OnnxEngine.open(helper_models["fixed"], SessionConfig(intra_op_threads=1))
    rows, ratios = measure_overhead(engine, batch=2, inputs=InputConfig(), run=QUICK_RUN, rounds=3)
    harness, bare = rows
    assert (harness.label, bare.label) == (measure.HARNESS_LABEL, measure.BARE_LABEL)
    assert harness.latency.count == bare.latency.count
    assert len(set(bare.times_ms)) > 1  # measured per run, not one mean repeated
    assert len(ratios) == 3 and harness.ratio == statistics.median(ratios) and bare.ratio == 1.0
    with pytest.raises(UsageError, match="--rounds 0 must be >= 1"):
        measure_overhead(engine, batch=2, inputs=InputConfig(), run=QUICK_RUN, rounds=0)


class ClockedEngine(Engine):
    """A stand-in engine on a clock that only its runs advance: a run takes `run_s`, and its harness step
    (`step()`, what `runner.measure` times) `harness_s` more; `runner()`, the bare loop's call, only the run."""

    name = "stand-in"
    model_path = Path("m.onnx")
    specs = (InputSpec("x", "tensor(float)", ("batch", 5)),)
    providers = ("CPUExecutionProvider",)

    def __init__(self, now: list[float], run_s: float, harness_s: float):
        self.now, self.run_s, self.harness_s = now, run_s, harness_s

    def prepare(self, batch, inputs):
        return Prepared(samples=batch, feeds=("a", "b"))

    def convert(self, feed):
        return feed

    def runner(self):
        def run(feed):
            self.now[0] += self.run_s
        return run

    def step(self, prepared):
        run = self.runner()

        def step():
            run(prepared.feeds[0])
            self.now[0] += self.harness_s
        return step

    def record(self):
        return EngineRecord(self.name, str(self.model_path), self.specs, ("y",), ("cpu",), self.providers, None, {})

    def device_times(self, prepared, runs=0):
        return None


@pytest.mark.parametrize("harness_us", [0.0, 250.0, 1000.0])
def test_a_harness_slowed_by_a_known_amount_is_detected(monkeypatch, harness_us):
    """On a clock only the runs advance (1 ms a run), a harness that adds H us per run has the ratio
    1000 / (1000 + H): the bare loop's median run over the harness's, the median of the rounds.
    Real timings of the two loops are the benchmark's job: `bench overhead`."""
    now = [0.0]
    monkeypatch.setattr(measure.time, "perf_counter", lambda: now[0])
    engine = ClockedEngine(now, run_s=0.001, harness_s=harness_us / 1e6)
    rows, ratios = measure_overhead(engine, batch=2, inputs=InputConfig(), run=QUICK_RUN, rounds=3)
    harness, bare = rows
    assert ratios == pytest.approx([1000 / (1000 + harness_us)] * 3)
    assert harness.ratio == pytest.approx(1000 / (1000 + harness_us)) and bare.ratio == 1.0
    assert harness.latency.p50 == pytest.approx(1 + harness_us / 1000) and bare.latency.p50 == pytest.approx(1.0)
    # Each round's bare loop makes as many runs as the harness's: QUICK_RUN's 50 ms at 1 ms (+H) a run.
    assert harness.latency.count == bare.latency.count >= 3 * math.floor(0.05 / (0.001 + harness_us / 1e6))


def test_a_row_until_stable_gave_up_on_is_warned_about():
    steady = Row.from_times(label="steady", engine="onnxruntime", model="m.onnx", batch=1, providers=["CPU"],
                            times_s=[0.010] * 40)
    jumpy = Row.from_times(label="jumpy", engine="onnxruntime", model="m.onnx", batch=1, providers=["CPU"],
                           times_s=[0.200 if i in (3, 17, 18, 31) else 0.010 for i in range(40)])
    run = RunConfig(until_stable=2.0, max_time=30.0)
    found = [w for w in measure.variation_warnings([steady, jumpy], run) if "not stable" in w]
    assert len(found) == 1 and found[0].startswith("jumpy batch 1: not stable within +-2% after --max-time 30 s")
    assert not [w for w in measure.variation_warnings([jumpy]) if "not stable" in w]  # without --until-stable
