"""Property tests over the run's readers: the export record, the training summary and progress, the IDX reader.

For any input: no traceback (only `UsageError`, one line, which `toolkit.cli.run` turns into exit 2), no
hang, and what is accepted has exactly the types the dataclasses declare (a string where a number belongs
must not reach a report's format string). The IDX reader never allocates more than its input and
MAX_IDX_BYTES allow. Documents are valid ones with one value replaced or one key removed (the decoder's
field checks) and arbitrary JSON and bytes (the parser's).
"""
from __future__ import annotations

import dataclasses
import gzip
import json
import types
import typing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.conftest import ROOT, run_module, summary_for
from tests.toolkit.test_idx import traced
from tests.toolkit.test_runs import _export_record
from toolkit import cli
from toolkit.cli import UsageError
from toolkit.idx import parse_idx, read_idx
from toolkit.runs import ElasticReset, EpochRecord, ExportRecord, RunDir, TrainProgress, TrainSummary

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SCALARS = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=20)
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                       max_size=4), max_leaves=12)


def _summary() -> TrainSummary:
    epoch = EpochRecord(1, 0.5, 0.8, 0.6, 0.75, 1e-3, 123.4, 9.5, 7)
    reset = ElasticReset(1, "rank lost", 2, 1, ("h1",), 64, 32, 32, 0, 0, 1.5)
    return summary_for(epochs=(epoch,), resets=(reset,), world_size=2)


def _conforms(value: Any, hint: Any) -> bool:
    """`value` has type `hint`, all the way down (the decoder's promise)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if dataclasses.is_dataclass(hint):
        hints = typing.get_type_hints(hint)
        return isinstance(value, hint) and all(_conforms(getattr(value, f.name), hints[f.name])
                                               for f in dataclasses.fields(hint))
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(value, a) for a in args)
    if origin is tuple:
        items = args[:1] * len(value) if len(args) == 2 and args[1] is Ellipsis else args
        return isinstance(value, tuple) and len(items) == len(value) and all(map(_conforms, value, items))
    if origin is list:
        return isinstance(value, list) and all(_conforms(v, args[0]) for v in value)
    if origin is dict or hint is dict:
        return isinstance(value, dict) and all(_conforms(v, args[1] if args else Any) for v in value.values())
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, float)
    return type(value) is hint


def _paths(doc: Any, at: tuple = ()) -> list[tuple]:
    """Every key path into a JSON document."""
    found = [at]
    if isinstance(doc, dict):
        for key, value in doc.items():
            found += _paths(value, (*at, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            found += _paths(value, (*at, index))
    return found


@st.composite
def mutated(draw, doc: dict) -> Any:
    """`doc` with the value at one path replaced by any JSON value, or the key there removed."""
    doc = json.loads(json.dumps(doc))
    path = draw(st.sampled_from(_paths(doc)[1:]))
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if isinstance(parent, dict) and draw(st.booleans()):
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(JSON)
    return doc


def _refused_in_one_line(read) -> Any:
    """What `read()` returns, or None when it raised UsageError; that message is one line and exits 2."""
    try:
        return read()
    except UsageError as exc:
        assert "\n" not in str(exc) and str(exc)
        assert cli.run("reader", lambda _: read()) == cli.USAGE_EXIT
        return None


def _write(path: Path, doc: Any) -> Path:
    path.write_text(json.dumps(doc))
    return path


@FUZZ
@given(doc=mutated(_export_record().to_json()) | JSON)
@example(doc={**_export_record().to_json(), "seconds": "9"})
@example(doc={**_export_record().to_json(), "files": [{**_export_record().to_json()["files"][0], "sha256": 5}]})
def test_export_records_are_read_with_their_types_or_refused_in_one_line(tmp_path, doc):
    record = _refused_in_one_line(lambda: ExportRecord.read(_write(tmp_path / "alexnet.onnx.json", doc)))
    assert record is None or _conforms(record, ExportRecord), record


@FUZZ
@given(doc=mutated(_summary().to_json()) | JSON)
@example(doc={**_summary().to_json(), "test_accuracy": "0.9"})
@example(doc={**_summary().to_json(), "class_names": "abc"})
def test_training_summaries_are_read_with_their_types_or_refused_in_one_line(tmp_path, doc):
    _write(tmp_path / "summary.json", doc)
    summary = _refused_in_one_line(RunDir(tmp_path).read_summary)
    assert summary is None or _conforms(summary, TrainSummary), summary


PROGRESS = dataclasses.asdict(TrainProgress(1, 2, 3, 10, 96, 0.5, 0.8))


@FUZZ
@given(doc=mutated(PROGRESS) | JSON)
@example(doc={**PROGRESS, "step": "3"})
def test_progress_is_read_with_its_types_or_not_at_all(tmp_path, doc):
    _write(tmp_path / "progress.json", doc)
    progress = RunDir(tmp_path).read_progress()   # a watcher polls it: never an exception
    assert progress is None or _conforms(progress, TrainProgress), progress


@FUZZ
@given(raw=st.binary(max_size=64))
@example(raw=b"[" * 200_000)
@example(raw=b"\xff\xfe")
def test_any_bytes_as_a_record_or_summary_are_refused_in_one_line(tmp_path, raw):
    (tmp_path / "alexnet.onnx.json").write_bytes(raw)
    (tmp_path / "summary.json").write_bytes(raw)
    _refused_in_one_line(lambda: ExportRecord.read(tmp_path / "alexnet.onnx.json"))
    _refused_in_one_line(RunDir(tmp_path).read_summary)


def _idx(ndim: int, dims: list[int], data: bytes) -> bytes:
    return b"\x00\x00\x08" + bytes([ndim]) + b"".join(d.to_bytes(4, "big") for d in dims) + data


@FUZZ
@given(raw=st.binary(max_size=64) | st.builds(_idx, st.integers(0, 255), st.lists(st.integers(0, 2**32 - 1),
                                                                                  max_size=5),
                                              st.binary(max_size=64)),
       zipped=st.booleans())
@example(raw=_idx(4, [65536] * 4, b""), zipped=False)          # 2**64 elements: int64 arithmetic wraps to 0
@example(raw=_idx(3, [2**32 - 1] * 3, b"\x00"), zipped=True)
@example(raw=_idx(1, [50_000_000], b""), zipped=False)  # 50 MB promised by an 8-byte file: read(n) allocated n
def test_the_idx_reader_returns_what_the_header_promises_or_refuses_in_one_line(tmp_path, raw, zipped):
    path = tmp_path / ("data.gz" if zipped else "data")
    path.write_bytes(gzip.compress(raw) if zipped else raw)
    array, peak = traced(lambda: _refused_in_one_line(lambda: read_idx(path)))
    assert peak < (1 << 20) + 4 * len(raw), f"{peak} bytes allocated for a {len(raw)}-byte file"
    if array is not None:
        header = 4 + 4 * array.ndim
        assert array.tobytes() == raw[header:] and array.shape == tuple(
            int.from_bytes(raw[i:i + 4], "big") for i in range(4, header, 4))
    unzipped = _refused_in_one_line(lambda: parse_idx(raw))
    assert (array is None) == (unzipped is None)


@pytest.mark.parametrize("doc", [
    {**_export_record().to_json(), "seconds": "nine"},
    {**_export_record().to_json(), "files": "alexnet.onnx"},
    [[[]]],
])
def test_bench_report_refuses_a_bad_record_in_one_line_with_exit_2(tmp_path, doc):
    """As a user meets it: `bench report RESULTS --run DIR` reads DIR's export record."""
    run = tmp_path / "run"
    run.mkdir()
    _write(run / "alexnet.onnx.json", doc)
    done = run_module("bench", "report", ROOT / "tests" / "bench" / "data" / "sweep-v3.json", "--run", run)
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.splitlines()) == 1 and "alexnet.onnx.json" in done.stderr, done.stderr
    assert sorted(p.name for p in run.iterdir()) == ["alexnet.onnx.json"]   # nothing written
