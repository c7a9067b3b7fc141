"""Verification and calibration inputs."""
from __future__ import annotations

import numpy as np
import pytest

from export import samples
from toolkit.cli import UsageError


def test_dataset_images_are_real_fashion_mnist(fashion_mnist_dir, test_images):
    images = samples.dataset_images("fashion_mnist", str(fashion_mnist_dir), "test", 64)
    np.testing.assert_array_equal(images, test_images)


def test_images_that_fit_are_fed_raw(test_images):
    x = samples.fit_to_input(test_images, (None, 28, 28, 1), "uint8")
    assert x.dtype == np.uint8
    np.testing.assert_array_equal(x, test_images)


def test_float_models_of_another_size_get_the_tutorial_preprocessing(test_images):
    x = samples.fit_to_input(test_images[:3], (None, 67, 67, 3), "float32")
    assert x.shape == (3, 67, 67, 3) and x.dtype == np.float32
    # Per-image standardisation: each image has (about) zero mean and unit variance.
    np.testing.assert_allclose(x.reshape(3, -1).mean(1), 0, atol=0.05)
    np.testing.assert_allclose(x.reshape(3, -1).std(1), 1, atol=0.1)


def test_images_that_cannot_fit_are_a_usage_error(test_images):
    with pytest.raises(UsageError, match="do not fit the model input"):
        samples.fit_to_input(test_images, (None, 32, 32, 1), "uint8")


def test_random_inputs_follow_the_input_dtype():
    raw = samples.random_inputs((None, 4, 4, 1), "uint8", 8, seed=3)
    assert raw.dtype == np.uint8 and raw.shape == (8, 4, 4, 1) and raw.max() > 200
    floats = samples.random_inputs((None, 5), "float32", 1000, seed=3)
    assert floats.dtype == np.float32 and abs(floats.mean()) < 0.2
    np.testing.assert_array_equal(samples.random_inputs((None, 5), "float32", 4, seed=3), floats[:4])
    with pytest.raises(UsageError, match="free sizes"):
        samples.random_inputs((None, None, 5), "float32", 1)
