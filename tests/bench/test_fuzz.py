"""Hostile and broken input to bench, by property (Hypothesis): every JSON file it reads and its numeric options.

    .venv/bin/pytest tests/bench/test_fuzz.py -q

Each property holds for every input Hypothesis makes: a bench results file of every schema version, a
settings file, the training summary and export record `bench report` shows, each with any value replaced by
any JSON value (or removed), or any JSON document at all; every float option of every subcommand given any
text; thread counts and input sizes of any size. What holds: no traceback (only `UsageError`, whose message
is one line), no hang (a float option is finite and bounded below), no allocation beyond the stated bound
(inputs: half the available memory, bench/inputs.py; threads: toolkit.environment.thread_limit()). Parsers
and constructors run in-process, for speed; the last tests run the real command on the reported cases
that found these (a NaN --min-time, a batch of 10^9, 100,000 threads from a settings file, "abc" threads,
a `$` in a model's name, --json onto a directory), and check that a refused command wrote nothing.
"""
from __future__ import annotations

import copy
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench import cli, inputs, report, tuned
from bench.inputs import InputSpec
from bench.results import BenchResult
from bench.session import SessionConfig
from tests.bench.test_report import (
    fixed_result,
    gpucheck_result,
    load_result,
    profile_result,
    train_result,
    tune_result,
)
from toolkit.cli import UsageError
from toolkit.environment import thread_limit
from toolkit.files import sha256_file
from toolkit.runs import ExportRecord, TrainSummary

DATA = Path(__file__).parent / "data"
FUZZ = settings(max_examples=150, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=16)


def _paths(value, prefix=()):
    """Every place in a JSON document: key and index paths, the root included."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*prefix, index))


@st.composite
def mutated(draw, documents):
    """One of `documents` with one value replaced by any JSON value, or removed."""
    doc = copy.deepcopy(draw(st.sampled_from(documents)))
    path = draw(st.sampled_from(list(_paths(doc))[1:]))
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if draw(st.booleans()):
        parent[path[-1]] = draw(JSON)
    elif isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent.pop(path[-1])
    return doc


def _one_line_refusal(read) -> object | None:
    """`read()`'s value, or None where it refused in one line; any other exception fails the property."""
    try:
        return read()
    except UsageError as exc:
        assert str(exc) and "\n" not in str(exc)
        return None


RESULTS = [json.loads(path.read_text()) for path in sorted(DATA.glob("*.json"))] + [
    json.loads(json.dumps(make().to_json()))
    for make in (fixed_result, train_result, load_result, profile_result, tune_result, gpucheck_result)]


def _read_and_render(doc) -> None:
    result = _one_line_refusal(lambda: BenchResult.from_json(doc, "r.json"))
    if result is not None:   # what loads renders: the terminal's tables and the run report
        report.render_text([result])
        report.to_markdown_document(report.document([result]))
        report.to_html(report.document([result]))


@FUZZ
@given(mutated(RESULTS))
def test_a_results_file_of_any_version_with_any_value_changed_loads_or_is_refused_in_one_line(doc):
    _read_and_render(doc)


@FUZZ
@given(JSON)
def test_any_json_document_is_a_result_or_refused_in_one_line(doc):
    _read_and_render(doc)
    _read_and_render({"schema": "alexnet-toolkit/bench", "version": 5, **(doc if isinstance(doc, dict) else {})})


RUN_DOCS = {"summary": json.loads((DATA / "run" / "summary.json").read_text()),
            "record": json.loads((DATA / "run" / "alexnet.onnx.json").read_text())}


@FUZZ
@given(mutated([RUN_DOCS["summary"]]), mutated([RUN_DOCS["record"]]))
def test_the_run_files_bench_report_shows_load_or_are_refused_in_one_line(summary, record):
    _one_line_refusal(lambda: TrainSummary.from_json(summary, "summary.json"))
    _one_line_refusal(lambda: ExportRecord.from_json(record, "alexnet.onnx.json"))


def _settings(model: Path, **change) -> tuned.TunedConfig:
    fields = dict(model=model, model_sha256=sha256_file(model), run=model, run_sha256=sha256_file(model),
                  variant="float32", batch=2, provider="cpu", intra_op_threads=1, inter_op_threads=0,
                  graph_optimization="all", execution_mode="sequential",
                  session_entries=(("session.intra_op.allow_spinning", "0"),), latency_budget_ms=20.0,
                  measured={"samples_per_second": 1.0}, machine={"cpu": "x", "usable_cpus": 2})
    return tuned.TunedConfig(**{**fields, **change})


@pytest.fixture(scope="module")
def settings_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("settings")
    (directory / "m.onnx").write_bytes(b"not really a model: only its digest is read here")
    return directory


@FUZZ
@given(doc=st.one_of(JSON, st.just(None)), data=st.data())
def test_a_settings_file_with_any_value_changed_loads_or_is_refused_in_one_line(settings_dir, doc, data):
    valid = _settings(settings_dir / "m.onnx").to_json(settings_dir)
    for candidate in (doc, data.draw(mutated([valid]))):
        config = _one_line_refusal(lambda: tuned.TunedConfig.from_json(candidate, settings_dir, "m.tuned.json"))
        if config is not None:   # what loads is in range and names files beside or below the settings file
            assert config.batch >= 1 and min(config.intra_op_threads, config.inter_op_threads) >= 0
            assert settings_dir in (config.model.parent, *config.model.parents)
            assert settings_dir in (config.run.parent, *config.run.parents)


@pytest.mark.parametrize("change, message", [
    ({"intra_op_threads": "abc"}, "settings.intra_op_threads must be int, got a string"),
    ({"batch": 0}, "batch 0 must be >= 1"),
    ({"latency_budget_ms": float("nan")}, "latency_budget_ms nan must be a number > 0 or null"),
    ({"run": {"path": "../m.onnx", "sha256": "0", "variant": "int8"}}, "run.path '../m.onnx' leaves the settings"),
    ({"model": {"path": "/etc/passwd", "sha256": "0"}}, "model.path '/etc/passwd' leaves the settings file's"),
])
def test_settings_files_are_refused_in_one_line_for(settings_dir, change, message):
    (settings_dir / "sub").mkdir(exist_ok=True)
    shutil.copy(settings_dir / "m.onnx", settings_dir / "sub" / "m.onnx")
    path = settings_dir / "sub" / "m.tuned.json"
    path.write_text(json.dumps({**_settings(settings_dir / "sub" / "m.onnx").to_json(path.parent), **change}))
    with pytest.raises(UsageError, match="m.tuned.json") as refused:
        tuned.read(path)
    assert message in str(refused.value) and "\n" not in str(refused.value)


def test_a_settings_file_names_models_only_beside_or_below_it(settings_dir):
    """A model elsewhere, named by `..` with its right digest: read anyway before; `bench tune -o` refuses to
    write such a file before it measures anything."""
    (settings_dir / "sub").mkdir(exist_ok=True)
    path = settings_dir / "sub" / "m.tuned.json"
    tuned.write(path, _settings(settings_dir / "m.onnx"))
    assert json.loads(path.read_text())["model"]["path"] == "../m.onnx"
    with pytest.raises(UsageError, match="model.path '../m.onnx' leaves the settings file's directory"):
        tuned.read(path)
    with pytest.raises(UsageError, match="is not beside or above .*m.onnx: .* write it to .*m.tuned.json"):
        tuned.check_location(path, settings_dir / "m.onnx")
    tuned.check_location(settings_dir / "m.tuned.json", settings_dir / "sub" / "m.onnx")   # above it: fine


def _subparsers():
    parser = cli.build_parser()
    return next(a for a in parser._actions if a.choices and "throughput" in a.choices).choices.items()


def _takes_a_float(action) -> bool:
    try:
        return isinstance(action.type("1.5"), float)
    except Exception:   # an option of another type (int, a list, ...) refuses 1.5 as it likes
        return False


FLOAT_OPTIONS = [(name, action.option_strings[-1], action.dest) for name, sub in _subparsers()
                 for action in sub._actions if action.type is not None and _takes_a_float(action)]
NUMBERS = st.one_of(st.floats().map(repr), st.sampled_from(["nan", "NaN", "inf", "-inf", "Infinity", "1e400",
                                                            "-0", "0", "1e-320", "1_000"]), st.text(max_size=8))


def test_no_option_takes_an_unchecked_float():
    unchecked = [(name, a.option_strings) for name, sub in _subparsers() for a in sub._actions if a.type is float]
    assert not unchecked and len(FLOAT_OPTIONS) >= 15


@FUZZ
@given(option=st.sampled_from(FLOAT_OPTIONS), text=NUMBERS)
def test_a_float_option_is_finite_and_in_range_or_refused_in_one_line(option, text):
    command, flag, dest = option
    argv = [command, "RESULT.json", "--baseline", "B.json"] if command == "check" else [command]
    args = _one_line_refusal(lambda: cli.build_parser().parse_args([*argv, f"{flag}={text}"]))
    if args is not None:
        value = getattr(args, dest)
        assert math.isfinite(value) and value >= 0
        if {"warmup", "min_time", "min_iterations"} <= set(vars(args)):   # the run's limits: constructed or refused
            _one_line_refusal(lambda: cli._run_config(args))


@FUZZ
@given(st.integers(min_value=-10, max_value=10**9), st.integers(min_value=-10, max_value=10**9))
def test_thread_counts_beyond_the_machine_are_refused_unless_forced(intra, inter):
    config = _one_line_refusal(lambda: SessionConfig(intra_op_threads=intra, inter_op_threads=inter))
    if config is not None:
        assert 0 <= max(intra, inter) <= thread_limit()
    if min(intra, inter) >= 0:
        assert SessionConfig(intra_op_threads=intra, inter_op_threads=inter, force=True).intra_op_threads == intra


AVAILABLE = 4 * 2**20   # what the memory check is told is free, so the property allocates little


@FUZZ
@given(batch=st.integers(min_value=1, max_value=2**40), width=st.integers(min_value=1, max_value=2**31 - 1),
       distinct=st.integers(min_value=1, max_value=64), dtype=st.sampled_from(sorted(inputs.ORT_DTYPES)))
def test_inputs_never_allocate_more_than_half_the_available_memory(monkeypatch, batch, width, distinct, dtype):
    monkeypatch.setattr(inputs, "available_memory_bytes", lambda: AVAILABLE)
    specs = [InputSpec("x", dtype, ("batch", width))]
    feeds = _one_line_refusal(lambda: inputs.InputConfig(distinct=distinct).feeds(specs, batch))
    if feeds is not None:
        assert sum(a.nbytes for feed in feeds for a in feed.values()) <= AVAILABLE // 2


def test_threads_from_a_settings_file_are_refused_before_a_session_starts():
    with pytest.raises(UsageError, match="100000 threads per pool is more than .* pass --force"):
        SessionConfig(intra_op_threads=100_000)


# ---- the real command


def _refused(done, *, absent: Path | None = None) -> str:
    assert done.returncode == 2 and done.stdout == "", done.stderr[-2000:]
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("bench: error: "), done.stderr[-2000:]
    assert absent is None or not absent.exists()
    return lines[0]


def test_a_nan_min_time_is_refused_not_looped_on(bench, helper_models, tmp_path):
    done = bench("throughput", "--model", helper_models["heavy"], "--batch", "1", "--min-time", "nan",
                 "--json", tmp_path / "r.json", timeout=60)
    assert "argument --min-time: nan must be a finite number >= 0" in _refused(done, absent=tmp_path / "r.json")


def test_a_batch_beyond_the_memory_is_refused_before_allocating(bench, helper_models, tmp_path):
    done = bench("throughput", "--model", helper_models["heavy"], "--batch", "1000000000", "--json",
                 tmp_path / "r.json", timeout=120)
    assert "GiB of memory available: lower --batch" in _refused(done, absent=tmp_path / "r.json")


@pytest.mark.parametrize("threads, message", [(100_000, "100000 threads per pool is more than"),
                                              ("abc", "settings.intra_op_threads must be int, got a string")])
def test_settings_file_threads_are_refused_in_one_line(bench, helper_models, tmp_path, threads, message):
    model = tmp_path / "heavy.onnx"
    shutil.copy(helper_models["heavy"], model)
    path = tmp_path / "heavy.tuned.json"
    path.write_text(json.dumps({**_settings(model).to_json(tmp_path), "intra_op_threads": threads}))
    done = bench("throughput", "--config", path, "--json", tmp_path / "r.json", timeout=120)
    assert message in _refused(done, absent=tmp_path / "r.json")


def test_json_onto_a_directory_is_refused_before_measuring(bench, helper_models, tmp_path):
    (tmp_path / "r.json").mkdir()
    done = bench("throughput", "--model", helper_models["heavy"], "--batch", "1", "--json", tmp_path / "r.json",
                 quick=True, timeout=120)
    assert f"output {tmp_path / 'r.json'} is a directory" in _refused(done)


def test_a_dollar_in_a_model_name_is_plotted_and_the_json_kept(bench, helper_models, tmp_path):
    model = tmp_path / "m$\\undefined$.onnx"
    shutil.copy(helper_models["heavy"], model)
    (tmp_path / "plots").mkdir()
    done = bench("sweep", "--model", model, "--batch", "1,2", "--plot-dir", tmp_path / "plots", "--json",
                 tmp_path / "r.json", quick=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((tmp_path / "r.json").read_text())["rows"][0]["model"] == str(model)
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [
        "latency-batch-1.png", "latency-batch-2.png", "throughput-vs-batch.png"]


def test_bench_report_refuses_a_results_file_of_wrong_types_in_one_line(bench, tmp_path):
    doc = json.loads((DATA / "sweep-v3.json").read_text())
    doc["rows"][0]["label"] = {"<script>": "\x1b[2J"}
    (tmp_path / "r.json").write_text(json.dumps(doc))
    done = bench("report", tmp_path / "r.json", "--export", tmp_path / "r.md")
    assert "rows[0].label must be str, got an object" in _refused(done, absent=tmp_path / "r.md")


def test_random_feeds_are_what_the_bound_counts():
    specs = [InputSpec("x", "tensor(float16)", ("batch", 3)), InputSpec("y", "tensor(int64)", (2,))]
    shapes = inputs.resolve_shapes(specs, 2, shapes={"y": (2,)})
    feed = inputs.make_feeds(specs, shapes, distinct=1)[0]
    assert inputs.feed_bytes(specs, shapes) == sum(a.nbytes for a in feed.values()) == 2 * 3 * 2 + 2 * 8
    assert isinstance(feed["x"], np.ndarray)
