"""What gets converted: the model's precision, its preprocessing, its names, its class names."""
from __future__ import annotations

import numpy as np
import pytest

from export import source
from export.verify import run_keras
from toolkit.cli import UsageError


def test_without_preprocessing_the_model_takes_what_the_preprocessing_outputs(trained_alexnet, test_images,
                                                                              keras_outputs):
    cut = source.load_source(trained_alexnet, preprocessing=False)
    assert tuple(cut.model.inputs[0].shape) == (None, 67, 67, 3)
    assert [name.split(" ")[0] for name in cut.preprocessing.layers] == ["standardize", "grey_to_rgb", "resize"]
    assert (cut.input_name, cut.output_name) == ("images", "probabilities")
    np.testing.assert_allclose(run_keras(cut.model, cut.to_model_input(test_images)), keras_outputs, atol=1e-6)


def test_no_preprocessing_on_a_model_without_any_is_a_usage_error():
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(UsageError, match="no leading preprocessing layers"):
        source.load_source(model, preprocessing=False)


def test_class_names_must_match_the_outputs(trained_alexnet_path):
    assert source.load_source(trained_alexnet_path).class_names[0] == "T-shirt/top"    # from summary.json beside
    with pytest.raises(UsageError, match="3 class names given for a model with 10 outputs"):
        source.load_source(trained_alexnet_path, class_names=["a", "b", "c"])

