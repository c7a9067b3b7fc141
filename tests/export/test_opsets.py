"""Opsets: the default is computed from the installed tf2onnx and onnxruntime, not assumed."""
from __future__ import annotations

import pytest
import tf2onnx

from export import opsets
from toolkit.cli import UsageError


def test_default_opset_is_the_newest_both_tools_support():
    supported = opsets.supported_opsets()
    assert opsets.default_opset() == supported[-1] == max(tf2onnx.constants.OPSET_TO_IR_VERSION)
    assert opsets.resolve_opset(None) == supported[-1]
    assert opsets.resolve_opset(supported[0]) == supported[0]
    with pytest.raises(UsageError, match="opset 99 is not supported"):
        opsets.resolve_opset(99)
