"""The checks can fail: a wrong weight and a variant that ignores its input are caught, and never written.

On a random-weight AlexNet the wrong weight passes the float32 tolerance and the constant
variant the float16 one (conftest's docstring has the numbers): these tests hold because the
model under test is trained and its outputs depend on its input.
"""
from __future__ import annotations

import io

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from rich.console import Console

from export import variants
from export.job import DEFAULT_FLOAT16_TOLERANCE, DEFAULT_TOLERANCE, ExportJob
from export.verify import FileCheck, run_onnx
from toolkit.cli import CheckFailed
from toolkit.onnxfile import write_checked

from .conftest import INT8_TEST_AGREEMENT


def _one_weight_flipped(path) -> onnx.ModelProto:
    """The model with conv1's largest weight negated: one wrong number among 35k in its kernel."""
    model = onnx.load(str(path))
    conv1 = next(n for n in model.graph.node if n.op_type == "Conv")
    kernel = next(t for t in model.graph.initializer if t.name == conv1.input[1])
    values = numpy_helper.to_array(kernel).copy()
    largest = np.abs(values).argmax()
    values.flat[largest] = -values.flat[largest]
    kernel.CopyFrom(numpy_helper.from_array(values, kernel.name))
    return model


def _ignores_its_input(like: onnx.ModelProto, row: np.ndarray) -> onnx.ModelProto:
    """A model with `like`'s input and output whose output is `row` for every input."""
    image, output = like.graph.input[0], like.graph.output[0]
    nodes = [helper.make_node("Shape", [image.name], ["batch"], start=0, end=1),
             helper.make_node("Concat", ["batch", "width"], ["shape"], axis=0),
             helper.make_node("Expand", ["row", "shape"], [output.name])]
    constants = [numpy_helper.from_array(row.reshape(1, -1).astype(np.float32), "row"),
                 numpy_helper.from_array(np.array([row.size], np.int64), "width")]
    graph = helper.make_graph(nodes, "ignores_its_input", [image], [output], initializer=constants)
    return helper.make_model(graph, opset_imports=like.opset_import, ir_version=like.ir_version)


@pytest.fixture(scope="module")
def float32_check(trained_export, test_images, keras_outputs) -> FileCheck:
    check = FileCheck("alexnet.onnx", test_images, keras_outputs, max_abs_diff=DEFAULT_TOLERANCE)
    check(trained_export.path)      # the file as exported passes
    return check


def test_a_file_with_one_wrong_weight_fails_the_tolerance_and_is_not_written(trained_export, float32_check,
                                                                           tmp_path):
    check = FileCheck("alexnet.onnx", float32_check.inputs, float32_check.keras, max_abs_diff=DEFAULT_TOLERANCE)
    with pytest.raises(CheckFailed, match=r"alexnet.onnx: max \|difference\| from keras is .* over the tolerance"):
        write_checked(_one_weight_flipped(trained_export.path), tmp_path / "alexnet.onnx", check)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("limit, message", [
    ({"max_abs_diff": DEFAULT_FLOAT16_TOLERANCE}, r"max \|difference\| from keras"),     # float16's check
    ({"min_agreement": INT8_TEST_AGREEMENT}, "top-1 agreement with alexnet.onnx"),      # int8's check
])
def test_a_variant_that_ignores_its_input_fails_and_is_not_written(trained_export, float32_check, limit, message,
                                                                   tmp_path):
    # The constant that is closest to the outputs: their mean over the test images.
    fake = _ignores_its_input(onnx.load(trained_export.path), float32_check.outputs.mean(0))
    check = FileCheck("alexnet.variant.onnx", float32_check.inputs, float32_check.keras, float32=float32_check,
                      **limit)
    with pytest.raises(CheckFailed, match=f"alexnet.variant.onnx: {message}"):
        write_checked(fake, tmp_path / "alexnet.variant.onnx", check)
    assert list(tmp_path.iterdir()) == []
    assert np.ptp(check.outputs, axis=0).max() == 0          # it really ignored its input


def test_the_export_stops_at_a_variant_that_ignores_its_input(trained_alexnet_path, monkeypatch, tmp_path):
    from export.pipeline import run

    def collapsed_int8(src, output_path, calibration, check):
        write_checked(_ignores_its_input(onnx.load(str(src)), run_onnx(src, calibration).mean(0)), output_path, check)

    monkeypatch.setattr(variants, "to_int8", collapsed_int8)
    job = ExportJob(model=str(trained_alexnet_path), output=str(tmp_path / "alexnet.onnx"), variants=("int8",),
                    samples=64, calibration_samples=64, int8_min_agreement=INT8_TEST_AGREEMENT)
    with pytest.raises(CheckFailed, match="alexnet.int8.onnx: top-1 agreement with alexnet.onnx is"):
        run(job, Console(file=io.StringIO()))
    assert not list(tmp_path.iterdir())       # no int8 file, no record, and no float32 file without its set
