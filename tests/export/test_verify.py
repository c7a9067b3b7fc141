"""Comparison numbers and the tolerance check."""
from __future__ import annotations

import numpy as np
import pytest

from export.verify import FileCheck, compare, run_onnx
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


def test_run_onnx_batches(trained_export, test_images, keras_outputs):
    np.testing.assert_allclose(run_onnx(trained_export.path, test_images[:5], batch_size=2), keras_outputs[:5],
                               atol=1e-5)


def test_agreement_is_with_the_float32_file_so_it_needs_its_check():
    with pytest.raises(ValueError, match="pass its check as float32"):
        FileCheck("c.onnx", np.zeros((1, 2)), np.zeros((1, 2)), min_agreement=0.99)
