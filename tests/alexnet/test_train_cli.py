"""`python -m alexnet.train` refusing bad input: one line, exit 2, no traceback, nothing written."""
import pickle

import pytest

from tests.alexnet.test_data import (
    Payload,
    cifar_batches,
    write_cifar_python,
    write_idx_dir,
)
from tests.conftest import run_module

QUICK = ["--image-size", "67", "--train-samples", "64", "--validation-samples", "32", "--epochs", "1",
         "--no-progress"]


def refuse(tmp_path, *args, message):
    out = tmp_path / "out"
    result = run_module("alexnet.train", *args, "--output-dir", out, cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("alexnet.train: error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not out.exists(), f"left behind: {list(out.rglob('*'))}"
    return errors[0]


@pytest.mark.parametrize("args,message", [
    (["--dataset", "imagenet"], "unknown dataset 'imagenet': use one of cifar10, fashion_mnist, synthetic"),
    (["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    (["--batch-size", "-8"], "--batch-size must be at least 1, got -8"),
    (["--epochs", "0"], "--epochs must be at least 1, got 0"),
    (["--image-size", "60"], "--image-size 60 is too small for AlexNet's three max-pools: use at least 67"),
    # argparse's own errors, in the same one line (no usage dump) and before TensorFlow loads.
    (["--epochs", "two"], "argument --epochs: invalid int value: 'two' (see `alexnet.train --help`)"),
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
])
def test_bad_flags(tmp_path, args, message):
    refuse(tmp_path, *args, message=message)


def test_missing_and_empty_data_dir(tmp_path):
    refuse(tmp_path, "--data-dir", tmp_path / "nowhere", message="does not exist")
    (tmp_path / "empty").mkdir()
    refuse(tmp_path, "--data-dir", tmp_path / "empty", message="is empty")


def test_truncated_idx(tmp_path):
    write_idx_dir(tmp_path / "d", corrupt="y_test")
    refuse(tmp_path, "--data-dir", tmp_path / "d", *QUICK, message="truncated")


def test_corrupt_gzip(tmp_path):
    write_idx_dir(tmp_path / "d")
    target = tmp_path / "d" / "train-images-idx3-ubyte.gz"
    target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    refuse(tmp_path, "--data-dir", tmp_path / "d", *QUICK, message="corrupt or truncated gzip")


def test_cifar_pickle_payload_does_not_run(tmp_path):
    write_cifar_python(tmp_path / "c", cifar_batches())
    (tmp_path / "c" / "cifar-10-batches-py" / "test_batch").write_bytes(
        pickle.dumps({b"data": Payload(), b"labels": []}, protocol=2))
    refuse(tmp_path, "--dataset", "cifar10", "--data-dir", tmp_path / "c", *QUICK, message="it was not executed")
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.slow
def test_resume_from_a_checkpoint_of_another_architecture(tmp_path, fashion_mnist_dir):
    out = tmp_path / "out"
    first = run_module("alexnet.train", *QUICK, "--output-dir", out)
    assert first.returncode == 0, first.stderr[-3000:]
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    result = run_module("alexnet.train", *QUICK, "--image-size", "99", "--resume", "--output-dir", out)
    assert result.returncode == 2, result.stderr[-3000:]
    line = [x for x in result.stderr.splitlines() if x.startswith("alexnet.train: error:")]
    assert len(line) == 1 and "was written for a different model" in line[0] and "--image-size" in line[0]
    assert "Traceback" not in result.stderr
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
