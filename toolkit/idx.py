"""The IDX format (MNIST, Fashion-MNIST): uint8 arrays with a big-endian header, gzipped or not.

    images = read_idx("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")   # (10000, 28, 28)

Damaged files are a one-line UsageError naming the file and the fix, never a numpy traceback.
"""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from toolkit.cli import UsageError
from toolkit.constants import FASHION_MNIST_TEST_IMAGES


def read_maybe_gz(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise UsageError(f"{path} is a corrupt or truncated gzip file ({exc}): "
                             f"download or reinstall it") from None
    return raw


def parse_idx(raw: bytes, name: str = "IDX data") -> np.ndarray:
    """Parse an IDX file: magic 0x0000 + type 0x08 (uint8) + ndim, then big-endian dims."""
    if len(raw) < 4:
        raise UsageError(f"{name} is truncated ({len(raw)} bytes): download it again")
    if raw[0:2] != b"\x00\x00" or raw[2] != 0x08 or not 1 <= raw[3] <= 4:
        raise UsageError(f"{name} is not a uint8 IDX file (bad magic number): "
                         f"point --data-dir at the Fashion-MNIST IDX files")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise UsageError(f"{name} is truncated (header incomplete): download it again")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        raise UsageError(f"{name} is truncated or corrupt: {len(raw)} bytes, its header "
                         f"promises {expected} for shape {dims}; download it again")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """An IDX file, gzipped or not, as a uint8 array; a one-line UsageError if missing or damaged."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path} does not exist: pass an IDX file, e.g. {FASHION_MNIST_TEST_IMAGES}")
    return parse_idx(read_maybe_gz(path), str(path))
