import pytest

from alexnet.config import TrainConfig
from toolkit.cli import UsageError


def test_defaults_are_the_tutorials():
    cfg = TrainConfig()
    assert (cfg.batch_size, cfg.image_size, cfg.epochs, cfg.lr, cfg.validation_samples) == (32, 227, 50, 0.001, 5000)


@pytest.mark.parametrize("kwargs,message", [
    ({"dataset": "imagenet"}, "unknown dataset 'imagenet'"),
    ({"epochs": 0}, "--epochs must be at least 1"),
    ({"batch_size": 0}, "--batch-size must be at least 1"),
    ({"batch_size": -4}, "--batch-size must be at least 1"),
    ({"image_size": 32}, "too small for AlexNet"),
    ({"precision": "half"}, "unknown --precision"),
    ({"momentum": 1.0}, "--momentum"),
    ({"dataset": "synthetic"}, "needs --train-samples"),
    ({"train_samples": 0}, "--train-samples must be at least 1"),
    ({"commit_every": 0}, "--commit-every must be at least 1"),
    ({"elastic": True, "steps_per_epoch": 5}, "--steps-per-epoch cannot shorten an elastic epoch"),
])
def test_bad_values_are_refused_with_the_fix(kwargs, message):
    with pytest.raises(UsageError, match=message):
        TrainConfig(**kwargs)
