"""Comparison numbers and the tolerance check."""
from __future__ import annotations

import numpy as np
import pytest

from export.verify import compare, run_onnx
from toolkit.cli import CheckFailed


def test_compare_reports_max_diff_and_top1_agreement():
    reference = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]], np.float32)
    candidate = reference.copy()
    candidate[0] = [0.95, 0.05]      # flips the top-1 of the first sample: diff 0.85
    result = compare("c.onnx", "keras", reference, candidate)
    assert result.samples == 4
    assert result.max_abs_diff == pytest.approx(0.85)
    assert result.top1_agreement == 0.75


def test_require_fails_outside_tolerance_and_names_the_numbers():
    reference = np.zeros((2, 3), np.float32)
    result = compare("c.onnx", "keras", reference, reference + 1e-3)
    result.require(max_abs_diff=1e-2, min_agreement=1.0)
    with pytest.raises(CheckFailed, match=r"c.onnx: max \|difference\| from keras is 0.001, over the tolerance 0.0001"):
        result.require(max_abs_diff=1e-4)


def test_require_fails_under_min_agreement():
    reference = np.array([[1, 0], [0, 1]], np.float32)
    result = compare("c.onnx", "a.onnx", reference, reference[::-1])
    with pytest.raises(CheckFailed, match="top-1 agreement with a.onnx is 0.00%"):
        result.require(min_agreement=0.99)


def test_non_finite_outputs_never_pass():
    reference = np.zeros((1, 2), np.float32)
    result = compare("c.onnx", "keras", reference, np.array([[np.nan, 0]], np.float32))
    with pytest.raises(CheckFailed):
        result.require(max_abs_diff=1.0)


def test_shape_mismatch_is_a_failed_check():
    with pytest.raises(CheckFailed, match="output shape"):
        compare("c.onnx", "keras", np.zeros((2, 3)), np.zeros((2, 4)))


def test_run_onnx_batches_and_transposes_for_nchw(small_export, small_alexnet, test_images):
    from export.verify import run_keras

    reference = run_keras(small_alexnet, test_images[:5])
    np.testing.assert_allclose(run_onnx(small_export.path, test_images[:5], batch_size=2), reference, atol=1e-5)
