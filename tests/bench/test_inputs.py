"""Inputs from a model's signature: shapes resolved or refused, random data of every dtype, real images."""
import gzip

import numpy as np
import pytest

from bench import inputs
from bench.inputs import InputSpec
from toolkit.cli import UsageError

MULTI = [InputSpec("images", "tensor(float)", ("batch", 8, 8, 3)), InputSpec("ids", "tensor(int64)", ("batch", "seq")),
         InputSpec("scale", "tensor(float16)", (1,))]
FASHION = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"


def test_batch_and_named_dims_resolve():
    shapes = inputs.resolve_shapes(MULTI[:2], batch=4, dims={"seq": 7})
    assert shapes == {"images": (4, 8, 8, 3), "ids": (4, 7)}


def test_fixed_leading_dim_that_is_not_a_batch_is_kept():
    # "scale" is [1]: a fixed first dim must match the batch, so it is only valid with --batch 1 ...
    with pytest.raises(UsageError, match="fixed batch dimension of 1: pass --batch 1"):
        inputs.resolve_shapes(MULTI, batch=4, dims={"seq": 7})
    # ... or with its shape given explicitly.
    shapes = inputs.resolve_shapes(MULTI, batch=4, dims={"seq": 7}, shapes={"scale": (1,)})
    assert shapes["scale"] == (1,)


@pytest.mark.parametrize("kwargs, message", [
    ({"dims": {}}, "axis 1 'seq' is dynamic: give its size with --dim seq=N"),
    ({"dims": {"seq": 2, "nope": 3}}, "'nope', which is not a dynamic dimension"),
    ({"dims": {"seq": 2}, "shapes": {"images": (4, 9, 8, 3)}}, "axis 1 is fixed at 8 in the model, not 9"),
    ({"dims": {"seq": 2}, "shapes": {"images": (4, 8, 8)}}, "rank 3 but the model's input has rank 4"),
    ({"dims": {"seq": 2}, "shapes": {"other": (1,)}}, "does not have"),
    ({"dims": {"seq": 2}, "batch": 0}, "batch size 0 must be >= 1"),
])
def test_contradictions_are_usage_errors(kwargs, message):
    kwargs = {"batch": 4, **kwargs}
    with pytest.raises(UsageError, match=message):
        inputs.resolve_shapes(MULTI[:2], **kwargs)


def test_unnamed_dynamic_dim_asks_for_a_shape():
    spec = [InputSpec("x", "tensor(float)", (None, None))]
    with pytest.raises(UsageError, match=r"--shape x=NxN"):
        inputs.resolve_shapes(spec, batch=2)
    assert inputs.resolve_shapes(spec, batch=2, shapes={"x": (2, 5)}) == {"x": (2, 5)}


def test_default_batch_follows_a_fixed_model():
    fixed = [InputSpec("x", "tensor(float)", (2, 5)), InputSpec("t", "tensor(float)", ())]
    assert inputs.default_batch(fixed, 256) == 2
    assert inputs.default_batch(MULTI, 256) == 256


@pytest.mark.parametrize("dtype", list(inputs.ORT_DTYPES))
def test_random_data_of_every_dtype_is_never_all_zero(dtype):
    spec = InputSpec("x", dtype, ("batch", 3))
    feeds = inputs.make_feeds([spec], {"x": (1, 3)}, seed=1, distinct=3)
    assert len(feeds) == 3
    for feed in feeds:
        array = feed["x"]
        assert array.dtype == inputs.ORT_DTYPES[dtype] and array.shape == (1, 3)
        assert np.any(array != 0)
    if dtype != "tensor(bool)":
        assert not np.array_equal(feeds[0]["x"], feeds[1]["x"])  # fresh per feed, not one cached buffer


def test_floats_have_no_zeros_and_ints_respect_the_range():
    rng = np.random.default_rng(0)
    floats = inputs.random_array(rng, (1000,), np.float16, (1, 100))
    assert floats.min() > 0
    ints = inputs.random_array(rng, (1000,), np.int64, (5, 9))
    assert ints.min() >= 5 and ints.max() <= 8
    uint8 = inputs.random_array(rng, (1000,), np.uint8, (1, 1000))
    assert uint8.min() >= 1


def test_unsupported_dtype_and_bad_options():
    with pytest.raises(UsageError, match="cannot generate"):
        InputSpec("s", "tensor(string)", (1,)).numpy_dtype
    with pytest.raises(UsageError, match="LOW,HIGH"):
        inputs.parse_int_range("7")
    with pytest.raises(UsageError, match="non-zero"):
        inputs.parse_int_range("0,1")
    with pytest.raises(UsageError, match="NAME=VALUE"):
        inputs.parse_dims(["seq"])
    with pytest.raises(UsageError, match="must be >= 1"):
        inputs.parse_shapes(["x=2x0"])
    assert inputs.parse_shapes(["in:0=2x3"]) == {"in:0": (2, 3)}


def test_real_images_feed_the_image_input():
    images = inputs.read_idx_images(FASHION)
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    spec = [InputSpec("images", "tensor(uint8)", ("batch", 28, 28, 1))]
    feeds = inputs.make_feeds(spec, {"images": (4, 28, 28, 1)}, distinct=2, images=images)
    np.testing.assert_array_equal(feeds[0]["images"][:, :, :, 0], images[:4])
    np.testing.assert_array_equal(feeds[1]["images"][:, :, :, 0], images[4:8])


def test_images_that_fit_no_input_are_refused(tmp_path):
    images = np.ones((3, 28, 28), np.uint8)
    with pytest.raises(UsageError, match="no model input takes 784"):
        inputs.make_feeds(MULTI[:1], {"images": (2, 8, 8, 3)}, images=images)
    bad = tmp_path / "bad.gz"
    with gzip.open(bad, "wb") as f:
        f.write(b"\x00\x00\x08\x01" + (4).to_bytes(4, "big") + bytes(4))  # a valid 1-d IDX: labels
    with pytest.raises(UsageError, match="not an IDX3"):
        inputs.read_idx_images(bad)


@pytest.mark.parametrize("specs, batch", [
    ([InputSpec("x", "tensor(float)", ("batch", 28, 28, 1))], 1_000_000_000),   # --batch 1000000000
    ([InputSpec("x", "tensor(float)", (1, 2**31 - 1))], 1),                     # a fixed dimension of 2^31-1
])
def test_inputs_larger_than_the_memory_are_refused_before_allocating(specs, batch):
    with pytest.raises(UsageError, match="more than half the .* GiB of memory available: .* pass --force") as refused:
        inputs.InputConfig().feeds(specs, batch)
    assert "\n" not in str(refused.value)


def test_the_memory_check_counts_every_distinct_feed_and_force_allocates_anyway(monkeypatch):
    specs = [InputSpec("x", "tensor(float)", ("batch", 256))]   # 1 KiB a sample
    monkeypatch.setattr(inputs, "available_memory_bytes", lambda: 16 * 2**10 * 2)
    assert len(inputs.InputConfig(distinct=2).feeds(specs, 8)) == 2       # 16 KiB: half of 32 KiB
    with pytest.raises(UsageError, match=r"\(3 distinct feeds\)"):
        inputs.InputConfig(distinct=3).feeds(specs, 8)
    assert len(inputs.InputConfig(distinct=3, force=True).feeds(specs, 8)) == 3
