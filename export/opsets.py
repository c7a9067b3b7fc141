"""ONNX opsets: the ones the installed tf2onnx can write and the installed onnxruntime can load.

    from export.opsets import resolve_opset, supported_opsets
    resolve_opset(None)     # the default: the newest both support (18 with tf2onnx 1.17, onnxruntime 1.31)
    resolve_opset(17)       # UsageError naming the supported range if either tool lacks it

Why probe instead of a constant: tf2onnx knows opsets onnxruntime cannot load yet (and the
other way round), and both move with every upgrade. A pinned number goes stale silently;
asking onnxruntime to load a one-node model per opset takes milliseconds and is always right.
"""
from __future__ import annotations

import onnx
import onnxruntime as ort
import tf2onnx
from onnx import helper

from toolkit.cli import UsageError
from toolkit.constants import PROVIDERS

# onnxruntime loads older opsets but only guarantees 7 and newer ("legacy support" below).
ORT_MIN_OPSET = 7
# onnxruntime's log severity while probing opsets that are expected to fail: 4 = FATAL only.
_SILENT = 4


def _ort_loads_opset(opset: int) -> bool:
    ir_version = tf2onnx.constants.OPSET_TO_IR_VERSION[opset]
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])
    probe = helper.make_model(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe", [x], [y]),
                              opset_imports=[helper.make_opsetid("", opset)], ir_version=ir_version)
    options = ort.SessionOptions()
    options.log_severity_level = _SILENT
    try:
        ort.InferenceSession(probe.SerializeToString(), options, providers=[PROVIDERS["cpu"]])
    except Exception:  # noqa: BLE001 - onnxruntime raises several types for "opset not supported"
        return False
    return True


def supported_opsets() -> list[int]:
    """Opsets that tf2onnx can convert to and the installed onnxruntime can load, ascending."""
    return [o for o in sorted(tf2onnx.constants.OPSET_TO_IR_VERSION) if o >= ORT_MIN_OPSET and _ort_loads_opset(o)]


def default_opset() -> int:
    """The newest opset both tf2onnx and onnxruntime support (computed, not assumed)."""
    return supported_opsets()[-1]


def resolve_opset(opset: int | None) -> int:
    """`opset` if both tools support it, the default for None; else a UsageError naming the range."""
    supported = supported_opsets()
    if opset is None:
        return supported[-1]
    if opset not in supported:
        raise UsageError(
            f"opset {opset} is not supported by the installed tools (tf2onnx {tf2onnx.__version__} and "
            f"onnxruntime {ort.__version__} share opsets {supported[0]}..{supported[-1]}): choose one of those")
    return opset
