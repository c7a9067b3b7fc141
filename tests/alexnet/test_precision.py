import pytest

from alexnet.precision import resolve, uses_loss_scaling
from toolkit.cli import UsageError


@pytest.mark.parametrize("caps,bf16,expected", [
    ([(8, 0)], False, "mixed_float16"),       # A100: tensor cores
    ([(7, 0), (9, 0)], True, "mixed_float16"),
    ([(6, 1)], True, "float32"),              # Pascal: float16 is slow there
    ([], True, "mixed_bfloat16"),             # CPU with AVX512_BF16 / AMX
    ([], False, "float32"),
])
def test_auto_follows_the_hardware(caps, bf16, expected):
    assert resolve("auto", caps, bf16) == expected


def test_explicit_policy_wins_and_unknown_is_refused():
    assert resolve("float32", [(9, 0)], True) == "float32"
    with pytest.raises(UsageError, match="unknown precision 'fp8'"):
        resolve("fp8", [], False)


def test_only_float16_needs_loss_scaling():
    assert uses_loss_scaling("mixed_float16")
    assert not uses_loss_scaling("mixed_bfloat16")
    assert not uses_loss_scaling("float32")


class Boom(Exception):
    pass


def test_global_policy_is_restored_however_the_block_ends():
    import keras

    from alexnet.precision import global_policy

    keras.mixed_precision.set_global_policy("float32")
    with global_policy("mixed_bfloat16") as policy:
        assert policy == keras.mixed_precision.global_policy().name == "mixed_bfloat16"
        with global_policy("float32"):  # how the trained model is saved for inference
            assert keras.mixed_precision.global_policy().name == "float32"
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
    assert keras.mixed_precision.global_policy().name == "float32"
    with pytest.raises(Boom):
        with global_policy("mixed_float16"):
            raise Boom
    assert keras.mixed_precision.global_policy().name == "float32"
