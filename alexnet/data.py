"""Datasets by name and the tf.data input pipeline.

    from alexnet import data
    arrays = data.load_arrays("fashion_mnist")          # Debian's IDX files
    arrays = data.load_arrays("cifar10", "~/cifar")     # a local python or binary archive
    splits = data.split(arrays, validation_size=5000, train_samples=8000)
    ds = data.train_pipeline(splits.x_train, splits.y_train, batch_size=32, seed=0, epoch=0,
                             rank=0, size=2)

Datasets:
  fashion_mnist  Debian's dataset-fashion-mnist IDX files (/usr/share/datasets/fashion-mnist)
                 or a directory with the same four files, gzipped or not.
  cifar10        Keras' real downloader (needs the internet), or a local directory holding
                 the python (`cifar-10-python.tar.gz` / `cifar-10-batches-py/`) or binary
                 (`cifar-10-binary.tar.gz` / `cifar-10-batches-bin/`) archive. The python
                 batches are pickles: they are read with an unpickler that can build nothing
                 but plain containers and numpy arrays, so a malicious file cannot run code.
  synthetic      random uint8 images and labels generated in memory: no input-pipeline cost,
                 for measuring the model and the all-reduce alone.

The split is the tutorial's (validation = the first 5,000 training images) but taken
by index ranges, so validation and training are disjoint by construction (the
tutorial's notebook leaked validation into training: 99.8% val vs 74% test).

Images stay uint8 at native resolution all the way to the model, whose first layers
standardise and resize on the device (see alexnet.model). `host_preprocess=True`
reproduces the tutorial's host-side standardise + resize to 227, for comparison.
"""
from __future__ import annotations

import io
import os
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from toolkit.cli import UsageError
from toolkit.constants import FASHION_MNIST_DIR, REAL_DATASETS
from toolkit.files import atomic_path
from toolkit.idx import read_idx

FASHION_MNIST_FILES = {
    "x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte",
}
TUTORIAL_VALIDATION_SIZE = 5000
SYNTHETIC_TEST_SIZE = 1024


@dataclass(frozen=True)
class Arrays:
    """A dataset in memory: uint8 NHWC images and int64 labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])


@dataclass(frozen=True)
class Splits:
    """Train / validation / test; `train_offset` is where training starts in the original train set."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    train_offset: int


# ---------------------------------------------------------------- Fashion-MNIST

def _find_idx(data_dir: Path, stem: str) -> Path:
    for candidate in (data_dir / f"{stem}.gz", data_dir / stem):
        if candidate.is_file():
            return candidate
    raise UsageError(f"{data_dir} has no {stem}[.gz]: point --data-dir at a directory with the four "
                     f"Fashion-MNIST IDX files (apt-get install dataset-fashion-mnist provides them)")


def load_fashion_mnist(data_dir: str | os.PathLike | None = None) -> Arrays:
    data_dir = Path(data_dir) if data_dir else FASHION_MNIST_DIR
    _require_dir(data_dir, "apt-get install dataset-fashion-mnist, or pass --data-dir")
    parts = {}
    for key, stem in FASHION_MNIST_FILES.items():
        parts[key] = read_idx(_find_idx(data_dir, stem))
    for split in ("train", "test"):
        x, y = parts[f"x_{split}"], parts[f"y_{split}"]
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise UsageError(f"Fashion-MNIST {split} images {x.shape} and labels {y.shape} do not match: "
                             f"the files in {data_dir} are corrupt or mixed up")
        if y.max(initial=0) >= 10:
            raise UsageError(f"Fashion-MNIST {split} labels go up to {y.max()}, expected 0..9: corrupt file")
    return Arrays(parts["x_train"][..., None], parts["y_train"].astype(np.int64),
                  parts["x_test"][..., None], parts["y_test"].astype(np.int64))


# ---------------------------------------------------------------- CIFAR-10

class _Refused(pickle.UnpicklingError):
    pass


class _SafeUnpickler(pickle.Unpickler):
    """Builds plain containers and numpy arrays only: a pickle that asks for anything else
    (os.system, builtins.eval, ...) is refused before it can run."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 spell bytes
    }

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise _Refused(f"refusing to load {module}.{name}")


def _unpickle_cifar_batch(raw: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = _SafeUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except _Refused as exc:
        raise UsageError(f"{name} is not a plain CIFAR-10 batch ({exc}); it was not executed: "
                         f"use the official archive") from None
    except Exception as exc:  # truncated pickles raise EOFError, ValueError, ...
        raise UsageError(f"{name} is corrupt or truncated ({type(exc).__name__}): "
                         f"download the CIFAR-10 archive again") from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise UsageError(f"{name} is not a CIFAR-10 batch (no data/labels): use the official archive")
    data, labels = batch[b"data"], np.asarray(batch[b"labels"])
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3072 or labels.shape != (len(data),):
        raise UsageError(f"{name} has unexpected contents for CIFAR-10: use the official archive")
    return data, labels


def _parse_cifar_binary(raw: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    record = 1 + 3072
    if not raw or len(raw) % record:
        raise UsageError(f"{name} is truncated or corrupt: {len(raw)} bytes is not a whole number "
                         f"of {record}-byte CIFAR-10 records; download it again")
    rows = np.frombuffer(raw, np.uint8).reshape(-1, record)
    return rows[:, 1:], rows[:, 0]


def _cifar_members(data_dir: Path) -> dict[str, tuple[bytes, str]]:
    """Map batch names (data_batch_1..5, test_batch) to raw bytes and the format ('py' or 'bin')."""
    members: dict[str, tuple[bytes, str]] = {}
    for fmt, sub in (("py", "cifar-10-batches-py"), ("bin", "cifar-10-batches-bin")):
        for root in (data_dir / sub, data_dir):
            for stem in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
                path = root / (stem + (".bin" if fmt == "bin" else ""))
                if path.is_file() and stem not in members:
                    members[stem] = (path.read_bytes(), fmt)
    for fmt, archive in (("py", "cifar-10-python.tar.gz"), ("bin", "cifar-10-binary.tar.gz")):
        path = data_dir / archive
        if members or not path.is_file():
            continue
        try:
            with tarfile.open(path) as tar:
                for member in tar.getmembers():
                    stem = Path(member.name).name.removesuffix(".bin")
                    if member.isfile() and (stem.startswith("data_batch_") or stem == "test_batch") and \
                            (file := tar.extractfile(member)) is not None:
                        members[stem] = (file.read(), fmt)
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise UsageError(f"{path} is a corrupt or truncated archive ({exc}): download it again") from None
    return members


def load_cifar10(data_dir: str | os.PathLike | None = None) -> Arrays:
    if data_dir is None:
        import keras  # the real loader; it downloads from the internet on first use

        try:
            (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
        except Exception as exc:
            raise UsageError(f"could not download CIFAR-10 ({type(exc).__name__}): pass --data-dir with "
                             f"cifar-10-python.tar.gz or cifar-10-binary.tar.gz") from None
        return Arrays(x_train, y_train.reshape(-1).astype(np.int64), x_test, y_test.reshape(-1).astype(np.int64))
    data_dir = Path(data_dir)
    _require_dir(data_dir, "pass --data-dir with the CIFAR-10 python or binary archive")
    members = _cifar_members(data_dir)
    wanted = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    missing = [w for w in wanted if w not in members]
    if missing:
        raise UsageError(f"{data_dir} has no CIFAR-10 {', '.join(missing)}: put cifar-10-python.tar.gz, "
                         f"cifar-10-binary.tar.gz or an extracted cifar-10-batches-* directory there")
    parsed = {}
    for stem in wanted:
        raw, fmt = members[stem]
        parse = _unpickle_cifar_batch if fmt == "py" else _parse_cifar_binary
        parsed[stem] = parse(raw, f"{data_dir}/{stem}")

    def stack(stems):
        data = np.concatenate([parsed[s][0] for s in stems])
        labels = np.concatenate([parsed[s][1] for s in stems]).astype(np.int64)
        if labels.max(initial=0) >= 10 or labels.min(initial=0) < 0:
            raise UsageError(f"CIFAR-10 labels outside 0..9 in {data_dir}: corrupt archive")
        # CIFAR stores planes (3, 32, 32) per row; models want NHWC.
        return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), labels

    x_train, y_train = stack(wanted[:5])
    x_test, y_test = stack(wanted[5:])
    return Arrays(x_train, y_train, x_test, y_test)


# ---------------------------------------------------------------- synthetic and dispatch

def synthetic_arrays(train_samples: int, image_size: int, num_classes: int = 10, seed: int = 0) -> Arrays:
    """Random images at the model's own resolution (no resize), so only the model is measured."""
    rng = np.random.default_rng(seed)
    shape = (image_size, image_size, 3)
    total = train_samples + TUTORIAL_VALIDATION_SIZE
    return Arrays(
        rng.integers(0, 256, (total, *shape), dtype=np.uint8),
        rng.integers(0, num_classes, total).astype(np.int64),
        rng.integers(0, 256, (SYNTHETIC_TEST_SIZE, *shape), dtype=np.uint8),
        rng.integers(0, num_classes, SYNTHETIC_TEST_SIZE).astype(np.int64),
    )


def _require_dir(path: Path, fix: str) -> None:
    if not path.is_dir():
        raise UsageError(f"data directory {path} does not exist: {fix}")
    if not any(path.iterdir()):
        raise UsageError(f"data directory {path} is empty: {fix}")


def load_arrays(name: str, data_dir: str | os.PathLike | None = None) -> Arrays:
    """Load a real dataset by name (synthetic data has its own function: it needs a size)."""
    if name == "fashion_mnist":
        return load_fashion_mnist(data_dir)
    if name == "cifar10":
        return load_cifar10(data_dir)
    raise UsageError(f"unknown dataset {name!r}: use one of {', '.join(REAL_DATASETS)}")


def split(arrays: Arrays, validation_size: int = TUTORIAL_VALIDATION_SIZE,
          train_samples: int | None = None, test_samples: int | None = None) -> Splits:
    """Validation = the first `validation_size` training images; training = the next `train_samples`;
    test = the first `test_samples` test images (all by default).

    Both are slices of disjoint index ranges of the same array, so no image can be in both.
    """
    n = len(arrays.x_train)
    if not 0 < validation_size < n:
        raise UsageError(f"validation size {validation_size} must be between 1 and {n - 1}")
    available = n - validation_size
    if train_samples is not None and not 0 < train_samples <= available:
        raise UsageError(f"--train-samples {train_samples} must be between 1 and {available} "
                         f"(the training images left after {validation_size} for validation)")
    if test_samples is not None and not 0 < test_samples <= len(arrays.x_test):
        raise UsageError(f"--test-samples {test_samples} must be between 1 and {len(arrays.x_test)}")
    end = validation_size + (train_samples or available)
    return Splits(
        x_train=arrays.x_train[validation_size:end], y_train=arrays.y_train[validation_size:end],
        x_val=arrays.x_train[:validation_size], y_val=arrays.y_train[:validation_size],
        x_test=arrays.x_test[:test_samples], y_test=arrays.y_test[:test_samples], train_offset=validation_size,
    )


# ---------------------------------------------------------------- tf.data pipelines

def shard_indices(n: int, rank: int, size: int) -> np.ndarray:
    """Indices of one rank's shard: every size-th image from `rank`; shards are disjoint and cover all."""
    return np.arange(rank, n, size)


def steps_per_epoch(n: int, batch_size: int, size: int) -> int:
    """Same on every rank (the smallest shard decides): ranks must run the same number of all-reduces."""
    return (n // size) // batch_size


def epoch_order(n: int, seed: int, epoch: int, rank: int, size: int) -> np.ndarray:
    """This rank's shard in this epoch's shuffled order: a pure function of (seed, epoch), so a
    resumed run sees exactly the batches an uninterrupted one would."""
    shard = shard_indices(n, rank, size)
    return shard[np.random.default_rng([seed, epoch, rank]).permutation(len(shard))]


def global_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """Every training image once, in this epoch's shuffled order, whatever the number of ranks:
    what elastic runs (`--elastic`) train on, as a pure function of (seed, epoch)."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def elastic_steps(n: int, position: int, batch_size: int, size: int) -> int:
    """Steps left in an elastic epoch `position` images in: each takes `size` x `batch_size` images."""
    return (n - position) // (batch_size * size)


def elastic_share(n: int, seed: int, epoch: int, position: int, batch_size: int, rank: int,
                  size: int) -> np.ndarray:
    """This rank's images, step after step, for the rest of an elastic epoch from `position`.

    Step k hands rank r the r-th block of `batch_size` images of the k-th group of `size` blocks
    of the epoch's global order, so the ranks together train the order's images in sequence and
    `position` (images trained so far, over all ranks) is all a world of another size needs to
    continue the epoch at a step's end: no image is lost or trained twice by the change.
    """
    steps = elastic_steps(n, position, batch_size, size)
    window = global_order(n, seed, epoch)[position: position + steps * size * batch_size]
    return window.reshape(steps, size, batch_size)[:, rank].reshape(-1)


def elastic_coverage(n: int, seed: int, epoch: int, batch_size: int,
                     segments: Sequence[tuple[int, int, int]]) -> tuple[int, int]:
    """(lost, repeated): images of the epoch's order before the last segment's end that no rank
    trained, and trainings beyond the first of an image, counted from what every rank of each
    segment (start position, end position, ranks) takes with `elastic_share`."""
    counts = np.zeros(n, np.int64)
    for start, end, size in segments:
        steps = (end - start) // (batch_size * size)
        for rank in range(size):
            np.add.at(counts, elastic_share(n, seed, epoch, start, batch_size, rank, size)[:steps * batch_size], 1)
    covered = global_order(n, seed, epoch)[:max((end for _, end, _ in segments), default=0)]
    return int(np.count_nonzero(counts[covered] == 0)), int(np.maximum(counts - 1, 0).sum())


@dataclass(frozen=True)
class Dealing:
    """How an epoch's images are dealt to ranks, as every checkpoint records it: a fixed world deals
    by rank and step (`epoch_order`), an elastic one by position in one global order (`elastic_share`).

    A run resuming an epoch stopped mid-way must deal the rest of it so that, with what was already
    trained, every image of the epoch is trained once. The order depends on the seed and the number
    of images; a fixed world's steps also on the ranks and the batch size (its step counts batches
    of them). Only an elastic epoch, dealt by position, can be taken up by a world of another size.
    """

    elastic: bool
    ranks: int
    batch_size: int
    seed: int
    images: int                 # training images in an epoch

    def __post_init__(self):
        if min(self.ranks, self.batch_size, self.images) < 1:
            raise ValueError(f"ranks, batch_size and images must be at least 1, got {self}")

    def describe(self) -> str:
        world = "elastic" if self.elastic else f"{self.ranks} rank{'s' if self.ranks > 1 else ''}"
        return f"{world}, batch {self.batch_size}, seed {self.seed}, {self.images} images"

    def resume_fix(self, now: "Dealing") -> str | None:
        """How to run so that `now` finishes this dealing's interrupted epoch with every image once
        (None: `now` does)."""
        as_written = "as the checkpoint was written"
        if now.images != self.images:
            return f"resume with the --dataset/--train-samples/--validation-samples that give {self.images} " \
                   f"training images, {as_written}"
        if now.seed != self.seed:
            return f"resume with --seed {self.seed} {as_written}"
        if now.batch_size != self.batch_size:
            return f"resume with --batch-size {self.batch_size} {as_written}"
        if now.elastic != self.elastic:
            return f"resume {'with' if self.elastic else 'without'} --elastic {as_written}"
        if not self.elastic and now.ranks != self.ranks:
            return f"resume on {self.ranks} ranks (horovodrun -np {self.ranks}) {as_written}"
        return None


def host_preprocess(images, image_size: int):
    """The tutorial's host-side preprocessing: standardise, grey->RGB, resize, as float32."""
    import tensorflow as tf

    images = tf.image.per_image_standardization(tf.cast(images, tf.float32))
    if images.shape[-1] == 1:
        images = tf.repeat(images, 3, axis=-1)
    return tf.image.resize(images, (image_size, image_size))


def train_pipeline(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, epoch: int,
                   rank: int = 0, size: int = 1, start_step: int = 0,
                   host_preprocess_size: int | None = None):
    """One epoch of this rank's shard: shuffled by (seed, epoch), batched, prefetched.

    `start_step` skips batches already trained on (resume mid-epoch) without reading them.
    """
    steps = steps_per_epoch(len(x), batch_size, size)
    order = epoch_order(len(x), seed, epoch, rank, size)[start_step * batch_size: steps * batch_size]
    return batches(x, y, order, batch_size, host_preprocess_size)


def batches(x: np.ndarray, y: np.ndarray, indices: np.ndarray, batch_size: int,
            host_preprocess_size: int | None = None):
    """x[indices] and y[indices] in that order, in full batches, prefetched."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x[indices], y[indices]))
    if host_preprocess_size:
        ds = ds.map(lambda im, lab: (host_preprocess(im, host_preprocess_size), lab),
                    num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def eval_pipeline(x: np.ndarray, y: np.ndarray, batch_size: int, rank: int = 0, size: int = 1,
                  host_preprocess_size: int | None = None):
    """This rank's shard of an evaluation set, every image once (no drop_remainder: the tutorial
    dropped 16 test images; ranks' partial sums are added up by the caller)."""
    import tensorflow as tf

    shard = shard_indices(len(x), rank, size)
    ds = tf.data.Dataset.from_tensor_slices((x[shard], y[shard]))
    if host_preprocess_size:
        ds = ds.map(lambda im, lab: (host_preprocess(im, host_preprocess_size), lab),
                    num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def save_sample_grid(images: np.ndarray, labels: np.ndarray, class_names, path: str | os.PathLike,
                     count: int = 5) -> None:
    """The tutorial's figure: the first `count` training images with their class names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, count, figsize=(2.2 * count, 2.6))
    for ax, image, label in zip(axes, images[:count], labels[:count]):
        ax.imshow(image.squeeze(), cmap="gray" if image.shape[-1] == 1 else None)
        ax.set_title(class_names[int(label)], fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
