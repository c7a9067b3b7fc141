"""`bench compare`'s parts: what it finds beside the model, and what an engine's process sends back.

The whole command runs in tests/bench/test_cli.py (without TensorFlow) and test_alexnet.py (with it).
"""
import pytest

from bench import compare, resources
from bench.compare import Contender, Measured
from bench.engines import OnnxEngine
from bench.inputs import InputConfig
from bench.runner import RunConfig
from bench.session import SessionConfig
from toolkit.cli import UsageError


def test_variants_and_keras_model_are_found_beside_the_onnx_file(tmp_path):
    model = tmp_path / "alexnet.onnx"
    assert compare.default_variants(model) == {} and compare.default_keras(model) is None
    for name in ("alexnet.int8.onnx", "model.keras"):
        (tmp_path / name).touch()
    assert compare.default_variants(model) == {"onnxruntime int8": tmp_path / "alexnet.int8.onnx"}
    assert compare.default_keras(model) == tmp_path / "model.keras"


def test_an_engine_process_warms_up_once_per_batch_and_sends_dataclasses(helper_models, monkeypatch):
    """Rounds at a new batch size warm up (the first run timed alone); later rounds at the same size do not."""
    calls = []

    def fake_measure(step, config, progress=None):
        assert config.warmup == 0  # warm-up happens before the CPU clock is read
        step()
        return [0.001] * config.min_iterations
    monkeypatch.setattr(resources, "measure", fake_measure)
    monkeypatch.setattr(compare, "_CHILD", {})
    counted = OnnxEngine.step

    def counting_step(self, prepared):
        step = counted(self, prepared)
        return lambda: calls.append(1) or step()
    monkeypatch.setattr(OnnxEngine, "step", counting_step)
    contender = Contender("multi", helper_models["multi"])
    run = RunConfig(warmup=3, min_time=0, min_iterations=2)
    inputs = InputConfig(dims=(("seq", 4),), shapes=(("scale", (1,)),))
    sent, runs = [], []
    for batch in (2, 2, 5):
        before = len(calls)
        sent.append(compare._child_measure(contender, (), batch, SessionConfig(intra_op_threads=1), inputs, run))
        runs.append(len(calls) - before)
    assert runs == [4, 1, 4]  # 3 warm-up runs (the first timed alone) + the fake measure's one
    assert all(isinstance(m, Measured) for m in sent)
    assert [m.samples for m in sent] == [2, 2, 5] and sent[0].times == (0.001, 0.001)
    assert sent[0].resources.first_run_ms > 0 and sent[1].resources.first_run_ms == 0
    assert sent[0].resources.load_seconds > 0 and sent[0].resources.peak_rss_bytes > 0
    assert sent[0].record.engine == "onnxruntime" and sent[0].record.model == str(helper_models["multi"])
    assert [s.name for s in sent[0].record.inputs] == ["images", "ids", "scale"]


def test_rounds_must_be_positive(helper_models):
    with pytest.raises(UsageError, match="--rounds 0 must be >= 1"):
        compare.run_compare(helper_models["fixed"], batches=(2,), session_config=SessionConfig(),
                            inputs=InputConfig(), run_config=RunConfig(), keras_path=None, variants={}, rounds=0,
                            progress=None)


def test_progress_names_the_batch_engine_and_round(helper_models):
    """Each engine, as it starts a round, is announced with its step of all of them: the bar's time left;
    with --profile, then each engine's profiles."""
    calls = []
    result = compare.run_compare(helper_models["fixed"], batches=(2,), session_config=SessionConfig(),
                                 inputs=InputConfig(), run_config=RunConfig(warmup=0, min_time=0, min_iterations=2),
                                 keras_path=None, variants={"copy": helper_models["fixed"]}, rounds=2,
                                 progress=lambda *call: calls.append(call),
                                 profile_run=RunConfig(warmup=1, min_time=0, min_iterations=3))
    assert calls == [("compare: batch 2, onnxruntime float32, round 1/2", 0, 4),
                     ("compare: batch 2, copy, round 1/2", 1, 4),
                     ("compare: batch 2, onnxruntime float32, round 2/2", 2, 4),
                     ("compare: batch 2, copy, round 2/2", 3, 4),
                     ("compare: profiling onnxruntime float32, 3 runs per batch size", 0, 2),
                     ("compare: profiling copy, 3 runs per batch size", 1, 2)]
    assert [(p.label, p.batch, p.runs) for p in result.profiles] == [("onnxruntime float32", 2, 3), ("copy", 2, 3)]
    # Each round: two turns of one run per engine (half the round's share of the 2 runs, rounded up).
    assert [r.rounds for r in result.rows] == [(2, 2), (2, 2)] and result.rows[1].resources.cpu_seconds > 0
    assert compare.OUTPUT_NOTES["host"] in result.notes  # how every engine handed back its outputs, said
    assert all(r.device_times is None for r in result.rows)  # on the CPU: nothing to split


def test_each_round_measures_the_engines_in_mirrored_order(helper_models, monkeypatch):
    """A B B A within every round, each turn half the round's share: a drift through the round weighs on both
    engines alike (bench/calibration.py: 3% drift, 3 rounds, fixed order A B gave 19% false verdicts)."""
    turns = []
    measured = compare.EngineProcesses._call

    def recording(self, contender, function, batches, run_config):
        if function is compare._child_measure:
            turns.append((contender.label, run_config.min_iterations))
        return measured(self, contender, function, batches, run_config)
    monkeypatch.setattr(compare.EngineProcesses, "_call", recording)
    result = compare.run_compare(helper_models["fixed"], batches=(2,), session_config=SessionConfig(),
                                 inputs=InputConfig(), run_config=RunConfig(warmup=0, min_time=0, min_iterations=8),
                                 keras_path=None, variants={"copy": helper_models["fixed"]}, rounds=2, progress=None)
    assert [label for label, _ in turns] == ["onnxruntime float32", "copy", "copy", "onnxruntime float32"] * 2
    assert {runs for _, runs in turns} == {2}                 # 8 runs over 2 rounds of 2 turns
    assert [r.rounds for r in result.rows] == [(4, 4), (4, 4)]  # a round's two turns make one paired round
    assert result.config["turn_order"] == compare.TURN_ORDER and any("A B B A" in n for n in result.notes)
