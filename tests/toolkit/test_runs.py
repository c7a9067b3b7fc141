"""The run contract: RunDir names, summary.json round trip, and refusals of what it cannot read."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from tests.conftest import summary_for
from toolkit.cli import UsageError
from toolkit.files import sha256_file
from toolkit.runs import (
    EXPORT_SCHEMA,
    EXPORT_VERSION,
    SUMMARY_SCHEMA,
    SUMMARY_VERSION,
    Comparison,
    EpochRecord,
    ExportedFile,
    ExportRecord,
    ExportResult,
    RunDir,
    TrainSummary,
    check_exported_file,
    export_record_path,
    variant_path,
)


def test_every_artifact_is_named_by_the_run_directory():
    run = RunDir("runs/alexnet")
    assert run.model == Path("runs/alexnet/model.keras")
    assert run.summary.name == "summary.json" and run.checkpoint.name == "checkpoint.npz"
    assert run.onnx == Path("runs/alexnet/alexnet.onnx")
    assert run.variant("int8") == Path("runs/alexnet/alexnet.int8.onnx")
    assert run.export_record == Path("runs/alexnet/alexnet.onnx.json")
    assert run.bench("sweep") == Path("runs/alexnet/bench-sweep.json")
    assert RunDir.of("runs/alexnet/alexnet.onnx") == run
    assert variant_path("/x/m.onnx", "float16") == Path("/x/m.float16.onnx")
    assert export_record_path("m.onnx") == Path("m.onnx.json")


def test_summary_round_trips_through_json_exactly(tmp_path):
    epoch = EpochRecord(epoch=1, loss=0.5, accuracy=0.8, val_loss=0.6, val_accuracy=0.75, learning_rate=1e-3,
                        images_per_second=123.4, seconds=9.5, resumed_at_step=7)
    summary = summary_for("cifar10", epochs=(epoch,), world_size=2)
    run = RunDir(tmp_path)
    run.write_summary(summary)
    doc = json.loads(run.summary.read_text())
    assert doc["schema"] == SUMMARY_SCHEMA and doc["version"] == SUMMARY_VERSION
    assert doc["epochs"][0]["resumed_at_step"] == 7
    back = run.read_summary()
    assert back == summary
    assert back.dataset == "cifar10" and back.class_names[0] == "airplane" and back.epochs[0] == epoch


def _written(tmp_path, doc) -> RunDir:
    (tmp_path / "summary.json").write_text(json.dumps(doc))
    return RunDir(tmp_path)


@pytest.mark.parametrize("change,message", [
    (lambda d: d.pop("schema"), "is not a training summary"),
    (lambda d: d.update(version=SUMMARY_VERSION + 1), "newer than this toolkit reads .*: upgrade"),
    (lambda d: d.update(version="1"), "no valid schema version"),
    (lambda d: d.pop("test_accuracy"), "malformed training summary \\(KeyError: 'test_accuracy'\\)"),
    (lambda d: d.update(throughput=[1, 2]), "malformed training summary \\(TypeError"),
    (lambda d: d["epochs"].append({"epoch": 1}), "malformed training summary \\(KeyError: 'loss'\\)"),
])
def test_summaries_it_cannot_read_are_refused_in_one_line(tmp_path, change, message):
    doc = json.loads(json.dumps(summary_for().to_json()))
    change(doc)
    run = _written(tmp_path, doc)
    with pytest.raises(UsageError, match=message):
        run.read_summary()
    assert run.summary_if_any() is None


def test_a_model_without_its_run_has_no_summary(tmp_path):
    assert RunDir(tmp_path).summary_if_any() is None
    with pytest.raises(UsageError, match="does not exist: train first"):
        RunDir(tmp_path).read_summary()


def test_summary_fields_are_the_documented_ones():
    documented = {"test_accuracy", "test_loss", "test_images", "world_size", "precision", "allreduce", "parameters",
                  "steps_per_epoch", "images_trained", "throughput", "epochs", "ranks", "class_names", "input",
                  "config", "environment", "created", "resets"}
    assert {f.name for f in dataclasses.fields(TrainSummary)} == documented
    import toolkit.runs
    for name in documented:
        assert f'"{name}"' in toolkit.runs.__doc__, f"{name} missing from the module docstring's JSON description"


def _export_record() -> ExportRecord:
    def vs(candidate, reference, diff, agreement):
        return Comparison(candidate, reference, 64, diff, agreement)
    result = ExportResult(path="r/alexnet.onnx", opset=18, method="fast", input_name="images",
                          output_name="probabilities", input_dtype="uint8", input_shape=["batch", 28, 28, 1],
                          layout="NHWC", preprocessing="raw images", size_bytes=1000, seconds=2.5,
                          metadata={"layout": "NHWC"}, timings={"convert": 1.0})
    files = (ExportedFile("r/alexnet.onnx", "float32", vs("alexnet.onnx", "keras", 1e-6, 1.0), 1000,
                          ("CPUExecutionProvider",)),
             ExportedFile("r/alexnet.int8.onnx", "int8", vs("alexnet.int8.onnx", "keras", 0.1, 0.98), 250,
                          ("CPUExecutionProvider",), vs("alexnet.int8.onnx", "alexnet.onnx", 0.1, 0.99)))
    return ExportRecord(config={"dataset": "fashion_mnist"}, verification_inputs="64 fashion_mnist test images",
                        export=result, files=files, seconds=9.0, environment={"hostname": "h"})


def test_export_record_round_trips_through_json_exactly(tmp_path):
    record = _export_record()
    path = export_record_path(tmp_path / "alexnet.onnx")
    record.write(path)
    doc = json.loads(path.read_text())
    assert doc["schema"] == EXPORT_SCHEMA and doc["version"] == EXPORT_VERSION
    assert doc["files"][1]["vs_float32"]["top1_agreement"] == 0.99 and doc["files"][0]["vs_float32"] is None
    back = ExportRecord.read(path)
    assert back == record
    assert back.files[1].name == "alexnet.int8.onnx" and back.export.opset == 18 and not back.export.nchw


def test_export_records_from_before_the_schema_are_read_as_version_1(tmp_path):
    """Until records carried a schema, export/pipeline.py wrote the same fields, leaving out a null vs_float32."""
    doc = json.loads(json.dumps(_export_record().to_json()))
    del doc["schema"], doc["version"], doc["files"][0]["vs_float32"]
    path = tmp_path / "alexnet.onnx.json"
    path.write_text(json.dumps(doc))
    assert ExportRecord.read(path) == _export_record()


@pytest.mark.parametrize("change,message", [
    (lambda d: d.update(schema="alexnet-toolkit/bench"), "is not an export record"),
    (lambda d: d.update(version=EXPORT_VERSION + 1),
     f"export record version {EXPORT_VERSION + 1}, newer than this toolkit reads"),
    (lambda d: d["files"][0].pop("vs_keras"), "malformed export record \\(KeyError: 'vs_keras'\\): re-export"),
    (lambda d: d.update(export="fast"), "malformed export record \\(TypeError"),
])
def test_export_records_it_cannot_read_are_refused_in_one_line(tmp_path, change, message):
    doc = json.loads(json.dumps(_export_record().to_json()))
    change(doc)
    path = tmp_path / "alexnet.onnx.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(UsageError, match=message):
        ExportRecord.read(path)


def test_export_record_fields_are_the_documented_ones():
    import toolkit.runs
    for cls in (ExportRecord, ExportResult, ExportedFile, Comparison):
        for field in dataclasses.fields(cls):
            assert f'"{field.name}"' in toolkit.runs.__doc__, f"{cls.__name__}.{field.name} is not documented"


def _export_set(directory: Path) -> Path:
    """alexnet.onnx and alexnet.int8.onnx with a version 2 record naming their sha256; the record's path."""
    record = _export_record()
    for name in ("alexnet.onnx", "alexnet.int8.onnx"):
        (directory / name).write_bytes(name.encode() * 100)
    files = tuple(dataclasses.replace(f, sha256=sha256_file(directory / f.name)) for f in record.files)
    path = export_record_path(directory / "alexnet.onnx")
    dataclasses.replace(record, files=files).write(path)
    return path


def test_an_export_set_whose_files_match_their_record_is_read(tmp_path):
    path = _export_set(tmp_path)
    assert [f.sha256 for f in ExportRecord.read(path).files] == [sha256_file(tmp_path / "alexnet.onnx"),
                                                                  sha256_file(tmp_path / "alexnet.int8.onnx")]
    check_exported_file(tmp_path / "alexnet.int8.onnx")
    check_exported_file(tmp_path / "elsewhere.onnx")   # no record: nothing to check it against


@pytest.mark.parametrize("change,message", [
    (lambda d: (d / "alexnet.int8.onnx").write_bytes(b"another export's int8 file"),
     r"alexnet.int8.onnx is not the file recorded in .*alexnet.onnx.json \(its sha256 differs: an export was "
     r"interrupted or the file replaced\): re-export \(python -m export MODEL.keras -o alexnet.onnx\)"),
    (lambda d: (d / "alexnet.int8.onnx").unlink(), "alexnet.int8.onnx, a file of the export recorded in .* is missing"),
])
def test_a_set_mixed_by_an_interrupted_export_is_refused_in_one_line(tmp_path, change, message):
    """What a re-export killed half-way left before the record named hashes: new files beside old ones."""
    path = _export_set(tmp_path)
    change(tmp_path)
    for read in (lambda: ExportRecord.read(path), lambda: check_exported_file(tmp_path / "alexnet.onnx")):
        with pytest.raises(UsageError, match=message) as refused:
            read()
        assert "\n" not in str(refused.value)


def test_a_variant_its_record_does_not_name_is_refused(tmp_path):
    _export_set(tmp_path)
    (tmp_path / "alexnet.float16.onnx").write_bytes(b"left by an older export")
    with pytest.raises(UsageError, match=r"alexnet.float16.onnx is not a file of the export recorded in "
                                         r".*alexnet.onnx.json \(left from an older export\?\): remove it"):
        check_exported_file(tmp_path / "alexnet.float16.onnx")


def test_records_that_name_no_hashes_are_read_without_their_files(tmp_path):
    """Version 1 records (tests/bench/data/run holds one, without its files) name no sha256: nothing to check."""
    path = export_record_path(tmp_path / "alexnet.onnx")
    _export_record().write(path)
    assert ExportRecord.read(path) == _export_record()
