"""Smaller variants of an exported float32 model: float16 and int8.

    from export.variants import to_float16, to_int8
    to_float16("alexnet.onnx", "alexnet.float16.onnx")
    to_int8("alexnet.onnx", "alexnet.int8.onnx", calibration_images)     # real images, model's input layout
    to_float16("alexnet.onnx", "alexnet.float16.onnx", check=FileCheck(...))   # export.verify

float16: onnxruntime's own converter (`onnxruntime.transformers.float16`), keeping the
  input and output types, so callers feed and read the same arrays as for float32.
int8: `onnxruntime.quantization.quantize_static` with `Int8Options` (DEFAULT_INT8 is the
  choice `python -m export.int8study` measured best here, README "int8: the choices"): QDQ format
  (what the TensorRT and CUDA providers consume too), per-channel int8 weights, uint8
  activations whose ranges are calibrated on real images, every op onnxruntime can run in
  int8 quantized but the last layer, whose logits stay float32.

Each variant is written once, through `toolkit.onnxfile`: under a temporary name, checked
with onnx.checker, loaded in onnxruntime and given to the caller's `check` (its outputs
against Keras and the float32 file), and renamed into place only if all of them passed.
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process
from onnxruntime.transformers.float16 import convert_float_to_float16

from toolkit.cli import UsageError
from toolkit.onnxfile import check_external_data, checked_path, load_model, write_checked
from toolkit.onnxgraph import topological_sort

# QDQ with per-channel axes needs QuantizeLinear/DequantizeLinear from opset 13.
INT8_MIN_OPSET = 13
CALIBRATION_BATCH = 16
CALIBRATION_METHODS = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                       "percentile": CalibrationMethod.Percentile}
QUANT_TYPES = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}


@dataclasses.dataclass(frozen=True)
class Int8Options:
    """The quantize_static choices that matter on a CPU (README "int8: the choices" compares them)."""

    quant_format: str = "QDQ"              # or "QOperator" (QLinearConv etc. written out)
    per_channel: bool = True               # weight scales per output channel, else one per tensor
    activations: str = "uint8"             # "int8": s8s8, which onnxruntime's x86 kernels run ~10x slower
    weights: str = "int8"
    reduce_range: bool = False             # 7-bit weights (for CPUs without VNNI, whose u8s8 sums saturate)
    calibration: str = "minmax"            # or "entropy", "percentile"
    op_types: tuple[str, ...] | None = None   # the op types to quantize; None: all onnxruntime can
    float_logits: bool = True              # the layer that feeds the output (logits) stays float32
    extra: tuple[tuple[str, object], ...] = ()   # quantize_static extra_options

    def __post_init__(self):
        if self.quant_format not in ("QDQ", "QOperator") or self.calibration not in CALIBRATION_METHODS or \
                {self.activations, self.weights} - set(QUANT_TYPES):
            raise ValueError(f"unsupported int8 options {self}")


DEFAULT_INT8 = Int8Options()


def to_float16(src: str | os.PathLike, output_path: str | os.PathLike,
               check: Callable[[Path], None] | None = None) -> None:
    model = convert_float_to_float16(load_model(src), keep_io_types=True)
    # The converter appends its Cast nodes at the end of the node list.
    topological_sort(model.graph)
    write_checked(model, output_path, check)


class _Batches(CalibrationDataReader):
    def __init__(self, input_name: str, images: np.ndarray):
        self._batches: Iterator[dict[str, np.ndarray]] = (
            {input_name: images[i:i + CALIBRATION_BATCH]} for i in range(0, len(images), CALIBRATION_BATCH))

    def get_next(self):
        return next(self._batches, None)


def _output_nodes(model: onnx.ModelProto, float_logits: bool) -> list[str]:
    """The nodes that stay float: the output's (quantized softmax probabilities tie, and argmax then picks
    the first class) and, with `float_logits`, the node feeding it (int8 logits of near ties tie too)."""
    producers = {out: n for n in model.graph.node for out in n.output}
    last = [producers[o.name] for o in model.graph.output if o.name in producers]
    feeding = [producers[i] for n in last for i in n.input if i in producers] if float_logits else []
    return [n.name for n in last + feeding]


def to_int8(src: str | os.PathLike, output_path: str | os.PathLike, calibration: np.ndarray,
            check: Callable[[Path], None] | None = None, options: Int8Options = DEFAULT_INT8) -> None:
    """Static int8; `calibration` holds real inputs exactly as the model takes them (layout included)."""
    check_external_data(src)
    model = onnx.load(str(src), load_external_data=False)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < INT8_MIN_OPSET:
        raise UsageError(f"int8 per-channel QDQ needs opset {INT8_MIN_OPSET} or newer, the model has {opset}: "
                         f"export with a newer --opset or leave out the int8 variant")
    if len(calibration) == 0:
        raise UsageError("int8 calibration needs at least one image: raise --calibration-samples")
    input_name = model.graph.input[0].name
    # The quantizer writes straight to the temporary name: the file is written once.
    with checked_path(output_path, check) as tmp, \
            tempfile.TemporaryDirectory(prefix=".int8-", dir=Path(output_path).parent) as scratch:
        # onnxruntime's recommended preparation: shape inference and graph optimisation (BatchNorm
        # fusion). Symbolic shape inference (it needs sympy) is for transformers; ONNX inference suffices.
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        # Names after the preparation, which fuses MatMul+Add into Gemm.
        keep_float = _output_nodes(onnx.load(str(prepared), load_external_data=False), options.float_logits)
        quantize_static(str(prepared), str(tmp), _Batches(input_name, calibration),
                        quant_format=getattr(QuantFormat, options.quant_format), per_channel=options.per_channel,
                        activation_type=QUANT_TYPES[options.activations], weight_type=QUANT_TYPES[options.weights],
                        reduce_range=options.reduce_range, calibrate_method=CALIBRATION_METHODS[options.calibration],
                        op_types_to_quantize=list(options.op_types) if options.op_types else None,
                        nodes_to_exclude=keep_float, extra_options=dict(options.extra))
