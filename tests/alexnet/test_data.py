import gzip
import io
import os
import pickle
import tarfile

import numpy as np
import pytest

from alexnet import data
from toolkit.cli import UsageError
from toolkit.constants import CLASS_NAMES
from toolkit.idx import parse_idx


@pytest.fixture(scope="module")
def fashion(fashion_mnist_dir):
    return data.load_fashion_mnist(fashion_mnist_dir)


def test_fashion_mnist_from_debian_files(fashion):
    assert fashion.x_train.shape == (60000, 28, 28, 1) and fashion.x_train.dtype == np.uint8
    assert fashion.x_test.shape == (10000, 28, 28, 1)
    assert sorted(np.unique(fashion.y_train)) == list(range(10))
    assert np.bincount(fashion.y_test).tolist() == [1000] * 10


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    return header + array.astype(np.uint8).tobytes()


def write_idx_dir(path, n_train=20, n_test=10, corrupt=None):
    rng = np.random.default_rng(0)
    parts = {"x_train": rng.integers(0, 256, (n_train, 28, 28)), "y_train": rng.integers(0, 10, n_train),
             "x_test": rng.integers(0, 256, (n_test, 28, 28)), "y_test": rng.integers(0, 10, n_test)}
    path.mkdir(exist_ok=True)
    for key, stem in data.FASHION_MNIST_FILES.items():
        raw = idx_bytes(parts[key])
        if key == corrupt:
            raw = raw[:-100]
        (path / f"{stem}.gz").write_bytes(gzip.compress(raw))
    return parts


def test_idx_round_trip_from_a_user_directory(tmp_path):
    parts = write_idx_dir(tmp_path)
    arrays = data.load_fashion_mnist(tmp_path)
    np.testing.assert_array_equal(arrays.x_train[..., 0], parts["x_train"])
    np.testing.assert_array_equal(arrays.y_test, parts["y_test"])


def test_truncated_idx_is_refused(tmp_path):
    write_idx_dir(tmp_path, corrupt="x_train")
    with pytest.raises(UsageError, match="truncated or corrupt"):
        data.load_fashion_mnist(tmp_path)


def test_corrupt_gzip_and_bad_magic_are_refused(tmp_path):
    write_idx_dir(tmp_path)
    target = tmp_path / "t10k-images-idx3-ubyte.gz"
    target.write_bytes(target.read_bytes()[:40])
    with pytest.raises(UsageError, match="corrupt or truncated gzip"):
        data.load_fashion_mnist(tmp_path)
    with pytest.raises(UsageError, match="bad magic"):
        parse_idx(b"PK\x03\x04" + bytes(100))


def test_missing_and_empty_directories(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        data.load_fashion_mnist(tmp_path / "nope")
    with pytest.raises(UsageError, match="is empty"):
        data.load_fashion_mnist(tmp_path)


# ---------------------------------------------------------------- CIFAR-10, written by the tests

def cifar_batches(n=20, seed=0):
    rng = np.random.default_rng(seed)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    return {name: (rng.integers(0, 256, (n, 3072), dtype=np.uint8), rng.integers(0, 10, n).tolist())
            for name in names}


def write_cifar_python(root, batches):
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for name, (x, y) in batches.items():
        # protocol 2, bytes keys: what the official (Python 2) archive holds.
        (d / name).write_bytes(pickle.dumps({b"data": x, b"labels": y, b"batch_label": name.encode()}, protocol=2))


def write_cifar_binary_tar(root, batches):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, (x, y) in batches.items():
            raw = np.concatenate([np.array(y, np.uint8)[:, None], x], axis=1).tobytes()
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}.bin")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    (root / "cifar-10-binary.tar.gz").write_bytes(buf.getvalue())


def test_cifar_python_and_binary_archives_agree(tmp_path):
    batches = cifar_batches()
    write_cifar_python(tmp_path / "py", batches)
    (tmp_path / "bin").mkdir()
    write_cifar_binary_tar(tmp_path / "bin", batches)
    a, b = data.load_cifar10(tmp_path / "py"), data.load_cifar10(tmp_path / "bin")
    assert a.x_train.shape == (100, 32, 32, 3) and a.x_test.shape == (20, 32, 32, 3)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    # Row layout is 1024 red, 1024 green, 1024 blue: pixel (0, 0) of image 0 in NHWC.
    x0 = batches["data_batch_1"][0][0]
    assert a.x_train[0, 0, 0].tolist() == [x0[0], x0[1024], x0[2048]]


class Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_cifar_pickle_with_code_execution_payload_is_refused_and_not_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    batches = cifar_batches()
    write_cifar_python(tmp_path, batches)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(
        pickle.dumps({b"data": Payload(), b"labels": []}, protocol=2))
    with pytest.raises(UsageError, match="refusing to load posix.system|refusing to load os.system"):
        data.load_cifar10(tmp_path)
    assert not (tmp_path / "PWNED").exists()


def test_truncated_cifar_files_are_refused(tmp_path):
    batches = cifar_batches()
    write_cifar_python(tmp_path, batches)
    p = tmp_path / "cifar-10-batches-py" / "test_batch"
    p.write_bytes(p.read_bytes()[:500])
    with pytest.raises(UsageError, match="corrupt or truncated"):
        data.load_cifar10(tmp_path)
    with pytest.raises(UsageError, match="whole number"):
        data._parse_cifar_binary(bytes(3073 * 2 + 5), "x.bin")


def test_cifar_directory_without_batches(tmp_path):
    (tmp_path / "readme.txt").write_text("hi")
    with pytest.raises(UsageError, match="has no CIFAR-10 data_batch_1"):
        data.load_cifar10(tmp_path)


# ---------------------------------------------------------------- split, shards, order

def test_validation_is_the_first_5000_and_disjoint_from_training(fashion):
    s = data.split(fashion, train_samples=8000)
    np.testing.assert_array_equal(s.x_val, fashion.x_train[:5000])
    np.testing.assert_array_equal(s.x_train, fashion.x_train[5000:13000])
    assert np.shares_memory(s.x_val, fashion.x_train) and not np.shares_memory(s.x_val, s.x_train)
    with pytest.raises(UsageError, match="between 1 and 55000"):
        data.split(fashion, train_samples=55001)


@pytest.mark.parametrize("n,size", [(100, 2), (101, 3), (7, 4)])
def test_shards_are_disjoint_and_cover_everything(n, size):
    shards = [data.shard_indices(n, r, size) for r in range(size)]
    together = np.concatenate(shards)
    assert len(together) == n and len(np.unique(together)) == n


def test_epoch_order_is_a_pure_function_of_seed_and_epoch():
    a = data.epoch_order(1000, seed=1, epoch=3, rank=1, size=2)
    np.testing.assert_array_equal(a, data.epoch_order(1000, seed=1, epoch=3, rank=1, size=2))
    assert not np.array_equal(a, data.epoch_order(1000, seed=1, epoch=4, rank=1, size=2))
    assert set(a) == set(data.shard_indices(1000, 1, 2))


def test_train_pipeline_resumes_mid_epoch_with_the_same_batches():
    x = np.arange(200, dtype=np.uint8).reshape(200, 1, 1, 1)
    y = np.arange(200) % 10
    full = [b[0].numpy().ravel().tolist() for b in data.train_pipeline(x, y, 8, seed=5, epoch=1, rank=0, size=2)]
    resumed = [b[0].numpy().ravel().tolist() for b in data.train_pipeline(x, y, 8, 5, 1, 0, 2, start_step=4)]
    assert len(full) == data.steps_per_epoch(200, 8, 2) == 12
    assert resumed == full[4:]


def test_elastic_shares_walk_one_global_order_whatever_the_world():
    order = data.global_order(100, seed=2, epoch=1)
    assert sorted(order) == list(range(100))
    # Step k of a 3-rank world hands rank r the r-th batch of the k-th group of 3 batches.
    shares = [data.elastic_share(100, 2, 1, 0, 4, rank, 3) for rank in range(3)]
    assert all(len(s) == 8 * 4 for s in shares)   # 8 full steps of 3 x 4; the last 4 images make none
    np.testing.assert_array_equal(shares[1][4:8], order[16:20])
    # A world of 2 continues exactly where 3 ranks stood after 5 steps (60 images).
    rest = [data.elastic_share(100, 2, 1, 60, 4, rank, 2) for rank in range(2)]
    np.testing.assert_array_equal(rest[0][:4], order[60:64])
    np.testing.assert_array_equal(rest[1][:4], order[64:68])


def test_elastic_coverage_counts_what_the_kept_steps_trained():
    n, seed, epoch, batch = 120, 4, 0, 5
    # 3 ranks for 4 steps (60 images), then 2 ranks from there: nothing lost, nothing twice.
    assert data.elastic_coverage(n, seed, epoch, batch, [(0, 60, 3), (60, 120, 2)]) == (0, 0)
    # The 2 ranks going on from an earlier position (45) train 45..60 again: 15 repeated.
    assert data.elastic_coverage(n, seed, epoch, batch, [(0, 60, 3), (45, 105, 2)]) == (0, 15)
    # ... or from a later one (75): 15 images of the order no rank trained.
    assert data.elastic_coverage(n, seed, epoch, batch, [(0, 60, 3), (75, 115, 2)]) == (15, 0)


def test_host_preprocessing_is_the_tutorials(fashion):
    out = data.host_preprocess(fashion.x_train[:2], 227).numpy()
    assert out.shape == (2, 227, 227, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out[..., 0], out[..., 2])


def test_sample_grid_png(fashion, tmp_path):
    data.save_sample_grid(fashion.x_train, fashion.y_train, CLASS_NAMES["fashion_mnist"], tmp_path / "s.png")
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["s.png"]


# ---------------------------------------------------------------- resuming an epoch stopped mid-way

N, B, STOPPED = 512, 16, 6      # the reported case: 512 images, batch 16, 2 ranks stopped after 6 steps


def coverage(*trained: np.ndarray) -> tuple[int, int]:
    """(never trained, trainings beyond an image's first) over the epoch's N images."""
    counts = np.bincount(np.concatenate(trained), minlength=N)
    return int(np.count_nonzero(counts == 0)), int(np.maximum(counts - 1, 0).sum())


def fixed_world_trained(ranks: int, steps: int) -> np.ndarray:
    return np.concatenate([data.epoch_order(N, 0, 0, r, ranks)[:steps * B] for r in range(ranks)])


def test_resuming_a_fixed_world_epoch_otherwise_skips_and_repeats_images_so_it_is_refused():
    before = fixed_world_trained(2, STOPPED)
    saved = data.Dealing(elastic=False, ranks=2, batch_size=B, seed=0, images=N)
    # What the loop dealt before it checked: --elastic went on from the position in the global order ...
    elastic = np.concatenate([data.elastic_share(N, 0, 0, STOPPED * 2 * B, B, r, 2) for r in range(2)])
    assert coverage(before, elastic) == (128, 128)
    # ... and one rank from the step in its own, single shard.
    one_rank = data.epoch_order(N, 0, 0, 0, 1)[STOPPED * B: data.steps_per_epoch(N, B, 1) * B]
    assert coverage(before, one_rank) == (61, 157)
    assert saved.resume_fix(data.Dealing(True, 2, B, 0, N)) == \
        "resume without --elastic as the checkpoint was written"
    assert saved.resume_fix(data.Dealing(False, 1, B, 0, N)) == \
        "resume on 2 ranks (horovodrun -np 2) as the checkpoint was written"
    # The same world, batch and seed take up exactly what is left.
    rest = np.concatenate([data.epoch_order(N, 0, 0, r, 2)[STOPPED * B: data.steps_per_epoch(N, B, 2) * B]
                           for r in range(2)])
    assert coverage(before, rest) == (0, 0) and saved.resume_fix(saved) is None


@pytest.mark.parametrize("elastic", [False, True])
def test_another_batch_size_seed_or_epoch_size_mid_epoch_is_refused_naming_the_one_written(elastic):
    saved = data.Dealing(elastic, 2, B, 0, N)
    assert saved.resume_fix(data.Dealing(elastic, 2, 64, 0, N)) == \
        f"resume with --batch-size {B} as the checkpoint was written"
    assert saved.resume_fix(data.Dealing(elastic, 2, B, 7, N)) == "resume with --seed 0 as the checkpoint was written"
    assert "give 512 training images" in saved.resume_fix(data.Dealing(elastic, 2, B, 0, 640))
    # A fixed world's steps would walk another shard order (64) or another seed's (7): images lost.
    assert coverage(fixed_world_trained(2, STOPPED),
                    *[data.epoch_order(N, 7, 0, r, 2)[STOPPED * B: 16 * B] for r in range(2)])[0] > 0


def test_an_elastic_epoch_goes_on_exactly_in_a_world_of_another_size():
    saved = data.Dealing(True, 2, B, 0, N)
    before = np.concatenate([data.elastic_share(N, 0, 0, 0, B, r, 2)[:STOPPED * B] for r in range(2)])
    after = data.elastic_share(N, 0, 0, STOPPED * 2 * B, B, 0, 1)
    assert coverage(before, after) == (0, 0)
    assert saved.resume_fix(data.Dealing(True, 1, B, 0, N)) is None
    assert saved.resume_fix(data.Dealing(False, 2, B, 0, N)) == "resume with --elastic as the checkpoint was written"


def test_a_dealing_is_validated_on_construction():
    with pytest.raises(ValueError, match="at least 1"):
        data.Dealing(False, 0, B, 0, N)
