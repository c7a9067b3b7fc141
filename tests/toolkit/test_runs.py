"""The run contract: RunDir names, summary.json round trip, and refusals of what it cannot read."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from tests.conftest import summary_for
from toolkit.cli import UsageError
from toolkit.runs import (
    SUMMARY_SCHEMA,
    SUMMARY_VERSION,
    EpochRecord,
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
                  "config", "environment", "created"}
    assert {f.name for f in dataclasses.fields(TrainSummary)} == documented
    import toolkit.runs
    for name in documented:
        assert f'"{name}"' in toolkit.runs.__doc__, f"{name} missing from the module docstring's JSON description"
