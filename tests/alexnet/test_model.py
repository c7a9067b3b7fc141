import keras
import numpy as np
import pytest

from alexnet.model import MIN_IMAGE_SIZE, build_alexnet, feature_map_size


def test_parameter_count_matches_the_tutorials_code():
    assert build_alexnet().count_params() == 58_327_818
    # LRN has no parameters where BatchNorm had 4 per channel of the five conv layers.
    assert build_alexnet(norm="lrn").count_params() == 58_327_818 - 4 * (96 + 256 + 384 + 384 + 256)


def test_tutorial_shapes():
    model = build_alexnet()
    shapes = {layer.name: layer.output.shape[1:] for layer in model.layers}
    assert shapes["conv1"] == (55, 55, 96)
    assert shapes["conv1_pool"] == (27, 27, 96)
    assert shapes["conv2_pool"] == (13, 13, 256)
    assert shapes["conv5_pool"] == (6, 6, 256)
    assert model.output.shape[1:] == (10,)


@pytest.mark.parametrize("size", [67, 100, 227])
def test_feature_map_size_matches_the_model(size):
    model = build_alexnet(image_size=size)
    assert model.get_layer("conv5_pool").output.shape[1] == feature_map_size(size)


def test_smallest_image_size_is_enforced():
    assert feature_map_size(MIN_IMAGE_SIZE) == 1
    assert feature_map_size(MIN_IMAGE_SIZE - 1) == 0
    with pytest.raises(ValueError, match="too small"):
        build_alexnet(image_size=MIN_IMAGE_SIZE - 1)


def test_in_model_preprocessing_standardises_greyscale_and_resizes():
    model = build_alexnet(image_size=67, input_shape=(28, 28, 1))
    assert model.inputs[0].dtype == "uint8"
    images = np.random.default_rng(0).integers(0, 256, (3, 28, 28, 1), dtype=np.uint8)
    standardised = model.get_layer("standardize")(images)
    np.testing.assert_allclose(np.mean(standardised, axis=(1, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(np.std(standardised, axis=(1, 2, 3)), 1, atol=1e-3)
    assert model.get_layer("resize").output.shape[1:] == (67, 67, 3)
    probs = model.predict(images, verbose=0)
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_computes_in_16_bits_with_float32_variables_and_output(policy):
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = build_alexnet(image_size=67, input_shape=(28, 28, 1))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    half = policy.removeprefix("mixed_")
    for name in ("conv1", "conv5", "fc6", "logits"):
        layer = model.get_layer(name)
        assert layer.compute_dtype == half
        assert all(v.dtype == "float32" for v in layer.weights)
    assert model.get_layer("standardize").compute_dtype == "float32"
    assert model.get_layer("probabilities").compute_dtype == "float32"
    out = model(np.zeros((1, 28, 28, 1), np.uint8))
    assert out.dtype == "float32"


def test_model_round_trips_through_keras_file(tmp_path):
    model = build_alexnet(image_size=67, input_shape=(28, 28, 1), norm="lrn")
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    x = np.random.default_rng(1).integers(0, 256, (2, 28, 28, 1), dtype=np.uint8)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
