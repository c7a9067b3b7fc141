"""The run contract: RunDir names, summary.json round trip, and refusals of what it cannot read."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from tests.conftest import summary_for
from toolkit.cli import UsageError
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
    (lambda d: d.update(version=EXPORT_VERSION + 1), "export record version 2, newer than this toolkit reads"),
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
