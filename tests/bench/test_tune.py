"""`bench tune`: the search on a known landscape, the settings file, `--config` and its overrides, on real models."""
import dataclasses
import json
import shutil
from typing import Callable

import pytest

from bench import cli, results, tune, tuned
from bench.compare import Measured
from bench.engines import EngineRecord
from bench.inputs import InputConfig, InputSpec
from bench.results import Resources, Row, Setting, Tune, TunePoint
from bench.runner import RunConfig
from bench.session import SessionConfig
from bench.tune import Space, coordinate_descent, improves, thread_counts
from toolkit.cli import UsageError
from toolkit.environment import usable_cpus
from toolkit.files import sha256_file

SPACE = Space(variants=(("float32", "m.onnx"), ("float16", "m.float16.onnx"), ("int8", "m.int8.onnx")),
              providers=("cpu",), threads=(0, 1, 2), batches=(1, 8, 32))
START = Setting("float32", "m.onnx", "cpu", 2, False, "all", "sequential", 1)
FACTORS = {"variant": {"float32": 1.0, "float16": 0.5, "int8": 3.0},
           "graph_optimization": {"disable": 0.3, "basic": 0.5, "extended": 0.9, "all": 1.0},
           "execution_mode": {"sequential": 1.0, "parallel": 0.8}, "batch": {1: 1.0, 8: 4.0, 32: 5.0}}


def landscape(setting: Setting) -> TunePoint:
    """A known machine: int8 is 3x, batch 32 5x; threads and spinning interact (pinned + spinning wins,
    either alone loses), so only a search that moves both at once finds it."""
    threading = {(0, True): 1.2, (2, False): 1.0}.get((setting.intra_op_threads, setting.spinning), 0.9)
    rate = 100 * threading
    for axis in FACTORS:
        rate *= FACTORS[axis][getattr(setting, axis)]
    p99 = 1000 * setting.batch / rate * 1.5
    return TunePoint(setting, samples_per_second=rate, p99_ms=p99, p90_ms=p99 / 1.5, iterations=5, phase="search")


def counting(function):
    seen = {}

    def evaluate(setting):
        if setting not in seen:
            seen[setting] = function(setting)
        return seen[setting]
    return evaluate, seen


def test_thread_counts_cover_the_default_powers_of_two_and_every_cpu():
    assert thread_counts(1) == (0, 1) and thread_counts(2) == (0, 1, 2)
    assert thread_counts(6) == (0, 1, 2, 4, 6) and thread_counts(16) == (0, 1, 2, 4, 8, 16)


def test_coordinate_descent_finds_the_best_point_of_a_known_landscape_in_few_measurements():
    evaluate, seen = counting(landscape)
    best = coordinate_descent(START, SPACE, evaluate, budget_ms=None, min_gain=0.03, passes=3)
    assert best == Setting("int8", "m.int8.onnx", "cpu", 0, True, "all", "sequential", 32)
    grid = 3 * 6 * 4 * 2 * 3
    assert len(seen) < grid / 10, len(seen)


def test_a_latency_budget_picks_the_fastest_point_within_it():
    evaluate, _ = counting(landscape)
    best = coordinate_descent(START, SPACE, evaluate, budget_ms=5.0, min_gain=0.03, passes=3)
    # batch 32 on int8 pinned+spinning: p99 = 1000 * 32 / 1800 * 1.5 = 26.7 ms; batch 8: 5.6; batch 1: 4.2 ms
    assert (best.variant, best.batch, best.intra_op_threads, best.spinning) == ("int8", 1, 0, True)
    assert landscape(best).p90_ms <= 5.0


def test_gains_within_the_noise_margin_do_not_move_the_search():
    point = landscape(START)
    slightly = dataclasses.replace(point, samples_per_second=point.samples_per_second * 1.02)
    clearly = dataclasses.replace(point, samples_per_second=point.samples_per_second * 1.05)
    assert not improves(slightly, point, None, 0.03) and improves(clearly, point, None, 0.03)
    # A point within the budget beats one over it however slow; over it, the lower p99 wins.
    over, within = dataclasses.replace(point, p90_ms=20.0), dataclasses.replace(point, p90_ms=5.0,
                                                                                samples_per_second=1.0)
    assert improves(within, over, 10.0, 0.03) and not improves(over, within, 10.0, 0.03)
    assert improves(dataclasses.replace(over, p90_ms=15.0), over, 10.0, 0.03)
    assert not improves(dataclasses.replace(over, p99_ms=1.0), over, 10.0, 0.03)  # the search goes by p90
    assert improves(point, None, None, 0.03) and not improves(None, point, None, 0.03)


def test_the_candidates_are_confirmed_against_the_defaults_at_their_batch_sizes():
    evaluate, seen = counting(landscape)
    winner = coordinate_descent(START, SPACE, evaluate, budget_ms=None, min_gain=0.03, passes=3)
    chosen = tune.candidates(list(seen.values()), winner, None, 3)
    assert chosen[0] == winner and len(set(chosen)) == 3
    assert all(landscape(c).samples_per_second >= landscape(chosen[-1]).samples_per_second for c in chosen)
    within = tune.candidates(list(seen.values()), winner, 5.0, 3)
    assert all(landscape(c).p90_ms <= 5.0 for c in within[1:])
    start = dataclasses.replace(START, batch=0)
    labels = tune.labelled([winner, dataclasses.replace(winner, batch=8), dataclasses.replace(START, batch=8)], start)
    assert labels == {"defaults @ 8": dataclasses.replace(START, batch=8), "defaults @ 32": dataclasses.replace(
        START, batch=32), "candidate 1": winner, "candidate 2": dataclasses.replace(winner, batch=8)}
    assert tune.labelled([winner], start) == {"defaults": dataclasses.replace(START, batch=32), "candidate 1": winner}


class StandInProcesses:
    """bench.compare.EngineProcesses for the confirmation, with known speeds: `speed(label, batch)` gives a
    setting's samples/s and, where not None, the time in ms of its slowest 5 runs in 100 (its p99); each round
    runs 1% faster than the one before, so the paired test has a spread."""

    speed: Callable[[str, int], tuple[float, float | None]]

    def __init__(self, contenders, session_config, inputs):
        self.contenders = contenders

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return None

    def take_turns(self, batch, run, rounds, progress, *, name, done=0, steps=None):
        spec = InputSpec("x", "tensor(float)", ("batch", 5))
        record = EngineRecord("onnxruntime", "m.onnx", (spec,), ("y",), ("cpu",), ("CPUExecutionProvider",), None, {})
        used = Resources(peak_rss_bytes=1, cpu_seconds=1.0, wall_seconds=1.0, usable_cpus=2, first_run_ms=1.0)
        turns = {}
        for contender in self.contenders:
            rate, slow_ms = self.speed(contender.label, batch)
            turns[contender.label] = [
                Measured(times=(batch / (rate * (1 + index / 100)),) * 95 + (
                    (slow_ms / 1000,) * 5 if slow_ms else (batch / (rate * (1 + index / 100)),) * 5),
                         samples=batch, record=record, resources=used)
                for index in range(rounds)]
        return turns


def confirmed_speeds(monkeypatch, speed: Callable[[str, int], tuple[float, float | None]]) -> None:
    monkeypatch.setattr(tune, "EngineProcesses", StandInProcesses)
    monkeypatch.setattr(StandInProcesses, "speed", staticmethod(speed), raising=False)


def test_the_confirmation_decides_within_the_budget_and_never_hands_back_a_slower_setting(monkeypatch):
    """The search's winner is candidate 1; the confirmation's speeds (stand-ins) decide which setting is chosen."""
    winner = dataclasses.replace(START, batch=8, variant="int8", model="m.int8.onnx", intra_op_threads=0, spinning=True)
    settings = {"defaults": dataclasses.replace(START, batch=8), "candidate 1": winner,
                "candidate 2": dataclasses.replace(START, batch=8, graph_optimization="basic")}
    evaluate = tune.Evaluator(SessionConfig(intra_op_threads=1), InputConfig(), RunConfig())
    evaluate.points[winner] = landscape(winner)  # what the search measured
    run = RunConfig(warmup=0, min_time=0.01, min_iterations=3)

    def chosen(rates, slow_ms=None, budget_ms=None):
        confirmed_speeds(monkeypatch, lambda label, batch: (rates[label], (slow_ms or {}).get(label)))
        return tune.confirm(settings, evaluate, InputConfig(), run, tune.TuneOptions(budget_ms=budget_ms, rounds=3),
                            None).chosen
    # Samples/s at batch 8: runs of 0.4 to 1 ms.
    assert chosen({"defaults": 8e3, "candidate 1": 12e3, "candidate 2": 16e3}) == "candidate 2"
    # The search's winner confirmed slower than the defaults: the defaults stay.
    assert chosen({"defaults": 16e3, "candidate 1": 12e3, "candidate 2": 8e3}) == "defaults"
    # The fastest is over the budget by its p99 over the confirmation's runs: the fastest within it wins.
    fast = {"defaults": 8e3, "candidate 1": 12e3, "candidate 2": 16e3}
    assert chosen(fast, {"candidate 2": 20.0}, budget_ms=10.0) == "candidate 1"
    with pytest.raises(UsageError, match=r"no setting met --latency-budget-ms 0.1: the best p99 found was 0.5"):
        chosen(fast, budget_ms=0.1)


def test_a_ratio_is_over_the_defaults_at_its_own_batch_size():
    start = dataclasses.replace(START, batch=0)
    settings = {"defaults @ 1": dataclasses.replace(START, batch=1),
                "defaults @ 8": dataclasses.replace(START, batch=8),
                "candidate 1": dataclasses.replace(START, batch=8, spinning=True),
                "candidate 2": dataclasses.replace(START, batch=1, spinning=True)}
    seconds = {"defaults @ 1": 0.01, "defaults @ 8": 0.02, "candidate 1": 0.01, "candidate 2": 0.04}
    rows = [Row.from_times(label=label, engine="onnxruntime", model="m.onnx", batch=settings[label].batch,
                           providers=["CPU"], times_s=[seconds[label]] * 3) for label in settings]
    ratios, defaults = tune.over_defaults(rows, settings, start)
    assert {r.label: r.ratio for r in ratios} == pytest.approx(
        {"defaults @ 1": 1.0, "defaults @ 8": 1.0, "candidate 1": 2.0, "candidate 2": 0.25})
    assert {batch: r.label for batch, r in defaults.items()} == {1: "defaults @ 1", 8: "defaults @ 8"}


def test_each_ratio_is_over_the_defaults_confirmed_at_the_same_batch(helper_models, tmp_path, monkeypatch):
    """A real search on a real model, then a confirmation with known speeds (stand-ins): the defaults at batch B
    run at 100 x B samples/s, candidate 1 at 500, any other at 80. The ratios, the choice and the settings file
    follow from those speeds."""
    model = tmp_path / "heavy.onnx"
    shutil.copy(helper_models["heavy"], model)

    def rate(label: str, batch: int) -> float:
        return 100.0 * batch if label.startswith("defaults") else {"candidate 1": 500.0}.get(label, 80.0)
    confirmed_speeds(monkeypatch, lambda label, batch: (rate(label, batch), None))
    result = tune.run_tune(model, batches=(1, 4), base=SessionConfig(intra_op_threads=1), inputs=InputConfig(),
                           run=RunConfig(warmup=1, min_time=0.01, min_iterations=3),
                           options=tune.TuneOptions(passes=1, candidates=2, rounds=2),
                           output=tmp_path / "heavy.tuned.json", progress=None)
    confirmed = dict(result.tune.confirmed)
    for row in result.rows:  # the geometric mean of the rounds' rates, 1% apart, over the defaults' alike
        assert row.ratio == pytest.approx(rate(row.label, row.batch) / (100.0 * row.batch), rel=1e-9), row.label
    fastest = max(result.rows, key=lambda r: rate(r.label, r.batch))
    assert result.tune.chosen == confirmed[fastest.label] and result.tune.defaults.batch == fastest.batch
    written = tuned.read(tmp_path / "heavy.tuned.json")
    assert (written.batch, written.measured["ratio"]) == (fastest.batch, fastest.ratio)


def test_the_pareto_front_holds_the_points_nothing_beats_in_both():
    def point(rate, p99):
        return TunePoint(START, rate, p99, p99, 5, "search")
    points = (point(100, 10), point(200, 30), point(150, 10), point(200, 40), point(50, 5), point(150, 10))
    front = Tune(points=points, budget_ms=None, defaults=START, chosen=START, config_path=None, search_seconds=1.0)
    assert front.pareto == (1, 2, 5, 4)  # fastest first; equal points both stay
    assert Tune.from_json(json.loads(json.dumps(front.to_json()))) == front


def _config(tmp_path, **changes) -> tuned.TunedConfig:
    fields = dict(model=tmp_path / "m.onnx", model_sha256=sha256_file(tmp_path / "m.onnx"),
                  run=tmp_path / "m.int8.onnx", run_sha256=sha256_file(tmp_path / "m.int8.onnx"),
                  variant="int8", batch=8, provider="cpu", intra_op_threads=1, inter_op_threads=0,
                  graph_optimization="extended", execution_mode="parallel",
                  session_entries=(("session.intra_op.allow_spinning", "1"),), latency_budget_ms=None,
                  measured={}, machine={})
    fields.update(changes)
    return tuned.TunedConfig(**fields)


@pytest.fixture
def tuned_files(tmp_path, helper_models):
    shutil.copy(helper_models["fixed"], tmp_path / "m.onnx")
    shutil.copy(helper_models["multi"], tmp_path / "m.int8.onnx")  # other bytes, as a variant has
    shutil.copy(helper_models["unnamed"], tmp_path / "other.onnx")
    tuned.write(tmp_path / "m.tuned.json", _config(tmp_path))
    return tmp_path


def test_the_settings_file_names_its_model_relative_to_itself(tuned_files):
    doc = json.loads((tuned_files / "m.tuned.json").read_text())
    assert (doc["schema"], doc["version"]) == (tuned.SCHEMA, tuned.VERSION)
    assert doc["model"]["path"] == "m.onnx" and doc["run"] == {"path": "m.int8.onnx", "variant": "int8",
                                                               "sha256": sha256_file(tuned_files / "m.int8.onnx")}
    assert tuned.read(tuned_files / "m.tuned.json") == _config(tuned_files, created=doc["created"])


def _args(argv):
    args = cli.build_parser().parse_args(argv)
    return args, tuned.apply(args, cli._given(argv))


def test_config_fills_what_the_command_line_does_not_give(tuned_files):
    config = str(tuned_files / "m.tuned.json")
    args, note = _args(["throughput", "--config", config])
    assert args.model == str(tuned_files / "m.int8.onnx")  # the variant the tune chose
    assert (args.batch, args.provider, args.intra_op_threads, args.graph_opt, args.execution_mode) == (
        "8", "cpu", 1, "extended", "parallel")
    assert args.session_config == ["session.intra_op.allow_spinning=1"]
    assert note.startswith(f"settings from {config}") and "given on the command line" not in note
    # Given flags win, even where they equal a default; the tuned model given runs its chosen variant.
    args, note = _args(["latency", "--config", config, "--model", str(tuned_files / "m.onnx"),
                                     "--batch", "1", "--intra-op-threads", "2",
                                     "--session-config", "session.intra_op.allow_spinning=0"])
    assert (args.model, args.batch, args.intra_op_threads, args.graph_opt) == (
        str(tuned_files / "m.int8.onnx"), "1", 2, "extended")
    assert dict(a.split("=") for a in args.session_config) == {"session.intra_op.allow_spinning": "0"}
    assert "given on the command line: --batch, --intra-op-threads, --session-config" in note
    # compare keeps the tuned model as its reference and measures the variants beside it anyway.
    args = cli.build_parser().parse_args(["compare", "--config", config])
    tuned.apply(args, cli._given(["compare", "--config", config]), run_variant=False)
    assert args.model == str(tuned_files / "m.onnx") and args.batch == "8"


def test_config_applies_to_load_too(bench, tuned_files):
    """`bench load --config`: the tuned variant, its batch as the query size and its session options; a flag
    given wins."""
    config = tuned_files / "m.tuned.json"
    load = ("load", "--config", config, "--dim", "seq=3", "--shape", "scale=1", "--scenario", "single-stream",
            "--min-duration", "0.1", "--min-queries", "20", "--warmup", "1", "--quiet")
    out = tuned_files / "load.json"
    done = bench(*load, "--json", out)
    assert done.returncode == 0, done.stderr
    doc = json.loads(out.read_text())
    (row,) = doc["load"]
    assert doc["kind"] == "load" and doc["model"]["path"] == str(tuned_files / "m.int8.onnx")
    assert row["settings"]["batch"] == 8 and row["resources"]["load_seconds"] > 0
    session = doc["config"]["session"]
    assert (session["intra_op_threads"], session["graph_optimization"], session["execution_mode"]) == (
        1, "extended", "parallel")
    assert ["session.intra_op.allow_spinning", "1"] in session["entries"]
    assert any(n.startswith(f"settings from {config}") for n in doc["notes"])
    done = bench(*load, "--batch", 2, "--json", out)
    assert done.returncode == 0, done.stderr
    doc = json.loads(out.read_text())
    assert doc["load"][0]["settings"]["batch"] == 2 and doc["config"]["session"]["intra_op_threads"] == 1
    assert any("given on the command line: --batch" in n for n in doc["notes"])


def test_given_options_are_told_apart_from_defaults():
    assert cli._given(["throughput", "--batch", "8", "--quiet"]) == {"batch", "quiet"}
    assert cli._given(["sweep", "--intra-op-threads", "2", "--session-config", "a=1"]) == {
        "intra_op_threads", "session_config"}


@pytest.mark.parametrize("change, message", [
    ("other", "was tuned for .*m.onnx .*not .*other.onnx: run `bench tune --model"),
    ("changed", "m.int8.onnx, which --config .* names, is missing or has changed since it was tuned"),
    ("schema", "is not a bench settings file"),
    ("newer", "bench settings file version 2, newer than this toolkit reads"),
    ("malformed", "malformed bench settings file"),
])
def test_config_for_another_model_or_broken_is_refused(tuned_files, change, message):
    path = tuned_files / "m.tuned.json"
    argv = ["throughput", "--config", str(path)]
    doc = json.loads(path.read_text())
    if change == "other":
        argv += ["--model", str(tuned_files / "other.onnx")]
    elif change == "changed":
        (tuned_files / "m.int8.onnx").write_bytes(b"re-exported")
    elif change == "schema":
        path.write_text(json.dumps({**doc, "schema": results.SCHEMA}))
    elif change == "newer":
        path.write_text(json.dumps({**doc, "version": 2}))
    else:
        path.write_text(json.dumps({k: v for k, v in doc.items() if k != "batch"}))
    with pytest.raises(UsageError, match=message):
        _args(argv)


def test_tune_writes_a_config_that_the_measuring_commands_reproduce(bench, helper_models, tmp_path):
    """A real model: the tune tries every axis, confirms its winner against the defaults (never slower there),
    and `--config` runs exactly the chosen setting; flags given override it."""
    model = tmp_path / "heavy.onnx"
    shutil.copy(helper_models["heavy"], model)
    out = tmp_path / "tune.json"
    done = bench("tune", "--model", model, "--batch", "1,16", "--warmup", 1, "--min-time", 0.05, "--min-iterations",
                 3, "--passes", 1, "--rounds", 2, "--confirm-time", 0.5, "--json", out, "--quiet")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and done.stderr == ""
    result = results.load(out)
    found = result.tune
    assert result.kind == "tune" and found.config_path == str(tmp_path / "heavy.tuned.json")
    tried = {p.setting for p in found.points}
    assert {s.batch for s in tried} == {1, 16} and {s.graph_optimization for s in tried} == {
        "disable", "basic", "extended", "all"}
    assert {(s.intra_op_threads, s.spinning) for s in tried} >= {(0, True), (1, False)}
    assert found.pareto and all(0 <= i < len(found.points) for i in found.pareto)
    confirmed = dict(found.confirmed)
    assert [r.label for r in result.rows] == list(confirmed) and "defaults" in [label[:8] for label in confirmed]
    # Each ratio is over the defaults' row at the same batch size (which rows those are: from `confirmed`).
    base = {confirmed[r.label].batch: r.throughput.samples_per_second for r in result.rows
            if dataclasses.replace(confirmed[r.label], batch=0) == dataclasses.replace(found.defaults, batch=0)}
    for row in result.rows:
        assert row.ratio == pytest.approx(row.throughput.samples_per_second / base[row.batch])
    assert found.defaults.batch == found.chosen.batch and found.defaults.intra_op_threads == usable_cpus()

    reproduced = tmp_path / "reproduced.json"
    done = bench("throughput", "--config", tmp_path / "heavy.tuned.json", "--json", reproduced, quick=True)
    assert done.returncode == 0, done.stderr
    doc = json.loads(reproduced.read_text())
    chosen = found.chosen
    assert doc["rows"][0]["batch"] == chosen.batch and doc["model"]["path"] == chosen.model
    session = doc["config"]["session"]
    assert (session["intra_op_threads"], session["graph_optimization"], session["execution_mode"],
            session["providers"]) == (chosen.intra_op_threads, chosen.graph_optimization, chosen.execution_mode,
                                      [chosen.provider])
    assert ["session.intra_op.allow_spinning", "1" if chosen.spinning else "0"] in session["entries"]
    assert any(n.startswith("settings from ") for n in doc["notes"])
    assert doc["rows"][0]["resources"]["peak_rss_bytes"] > 0

    overridden = tmp_path / "overridden.json"
    done = bench("latency", "--config", tmp_path / "heavy.tuned.json", "--batch", 3, "--graph-opt", "basic",
                 "--json", overridden, quick=True)
    assert done.returncode == 0, done.stderr
    doc = json.loads(overridden.read_text())
    assert doc["rows"][0]["batch"] == 3 and doc["config"]["session"]["graph_optimization"] == "basic"
    assert doc["config"]["session"]["intra_op_threads"] == chosen.intra_op_threads


def test_progress_counts_the_points_of_each_phase_then_the_confirmations_turns(helper_models, tmp_path):
    """Each new point is a step of its phase (the starting point, the search: at most so many points), then each
    turn of the confirmation, as `bench compare` counts them: what bench.report.MeasureProgress shows."""
    calls = []
    result = tune.run_tune(helper_models["fixed"], batches=None, base=SessionConfig(intra_op_threads=1),
                           inputs=InputConfig(), run=RunConfig(warmup=1, min_time=0.02, min_iterations=3),
                           options=tune.TuneOptions(passes=1, candidates=1, rounds=2, confirm_time=0.1),
                           output=tmp_path / "fixed.tuned.json", progress=lambda *call: calls.append(call))
    starting = [c for c in calls if c[0].startswith("tune: starting point")]
    search = [c for c in calls if c[0].startswith("tune: search")]
    confirming = [c for c in calls if c[0].startswith("tune: confirming")]
    assert calls == starting + search + confirming
    assert [c[1:3] for c in starting] == [(0, 1)] and starting[0][0].endswith("batch 2")  # the model's fixed batch
    assert len(search) == len(result.tune.points) - 1 and all(c[1] < c[2] for c in search)
    assert [c[1] for c in search] == list(range(len(search))) and "fastest so far" in search[0][0]
    assert all(len(c) == 4 and c[3].min_iterations == 3 for c in starting + search)  # the timing loop fills each
    turns = len(result.rows) * 2
    assert [c[1:] for c in confirming] == [(i, turns) for i in range(turns)]
    assert confirming[0][0] == "tune: confirming: batch 2, defaults, round 1/2"


def test_a_budget_no_setting_meets_is_one_line_with_the_best_p99_and_no_files(bench, helper_models, tmp_path):
    model = tmp_path / "fixed.onnx"
    shutil.copy(helper_models["fixed"], model)
    done = bench("tune", "--model", model, "--latency-budget-ms", "0.000001", "--json", tmp_path / "t.json",
                 quick=True)
    assert done.returncode == 2 and done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith("bench: error: no setting met --latency-budget-ms 1e-06: the best p99 found was ")
    assert "raise the budget" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fixed.onnx"]
