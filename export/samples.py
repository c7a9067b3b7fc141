"""Inputs for verification and int8 calibration: real dataset images, or random ones.

Real images are fed raw when they fit the model's input (our models take the dataset's
uint8 images and preprocess inside). A model with a float input of another size (the
tutorial's 227x227x3 float32) gets them preprocessed the tutorial's way first:
per-image standardisation, grey->RGB, resize (alexnet.data.host_preprocess).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from alexnet import data
from toolkit.cli import UsageError

SPLITS = ("train", "test")


def dataset_images(dataset: str, data_dir: str | None, split: str, count: int) -> np.ndarray:
    """The first `count` images of a real dataset split, uint8 NHWC."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    arrays = data.load_arrays(dataset, data_dir)
    images = arrays.x_train if split == "train" else arrays.x_test
    return images[:count]


def fit_to_input(images: np.ndarray, input_shape: Sequence[int | None], input_dtype: str) -> np.ndarray:
    """Dataset images as the model's input takes them (see the module docstring)."""
    shape = tuple(input_shape[1:])
    fits = len(shape) == images.ndim - 1 and all(d is None or d == s for d, s in zip(shape, images.shape[1:]))
    if fits:
        return images.astype(input_dtype, copy=False)
    square_rgb_size = shape[0] if len(shape) == 3 and shape[0] == shape[1] and shape[2] == 3 else None
    if np.issubdtype(np.dtype(input_dtype), np.floating) and square_rgb_size is not None:
        return np.asarray(data.host_preprocess(images, square_rgb_size)).astype(input_dtype, copy=False)
    raise UsageError(f"dataset images {'x'.join(map(str, images.shape[1:]))} do not fit the model input "
                     f"{'x'.join(map(str, shape))} {input_dtype}: verify with random inputs (no --dataset)")


def random_inputs(input_shape: Sequence[int | None], input_dtype: str, count: int, seed: int = 0) -> np.ndarray:
    """Random inputs: uniform 0..255 bytes for integer inputs (raw images), standard normal for floats."""
    shape = tuple(d for d in input_shape[1:] if d is not None)
    if len(shape) != len(input_shape[1:]):
        raise UsageError(f"model input {tuple(input_shape)} has free sizes besides the batch: "
                         f"verify it with --dataset images instead")
    rng = np.random.default_rng(seed)
    dtype = np.dtype(input_dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(max(info.min, 0), min(info.max, 255) + 1, (count, *shape)).astype(dtype)
    return rng.standard_normal((count, *shape)).astype(dtype)
