"""The IDX format (MNIST, Fashion-MNIST): uint8 arrays with a big-endian header, gzipped or not.

    images = read_idx("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")   # (10000, 28, 28)

Damaged files are a one-line UsageError naming the file and the fix, never a numpy traceback.
What is read is bounded before it is read: the header's shape is multiplied out exactly (numpy's
int64 product wraps around for dimensions near 2**32) and refused above MAX_IDX_BYTES, and only
the bytes the header promises (plus one, to see a longer file) are read or decompressed, so a
crafted header or a gzip bomb cannot make the reader allocate more.
"""
from __future__ import annotations

import gzip
import io
import math
import os
import zlib
from pathlib import Path
from typing import Callable

import numpy as np

from toolkit.cli import UsageError
from toolkit.constants import FASHION_MNIST_TEST_IMAGES

# Fashion-MNIST's largest file holds 47 MB; an IDX header promising more than this is damage, not data.
MAX_IDX_BYTES = 1 << 30
# A file object's read(n) allocates n bytes before it learns how many the file holds: the data is read in
# chunks, so a header promising a gigabyte over a few bytes of file allocates a chunk, not the promise.
READ_CHUNK = 1 << 16


def _read_at_most(read: Callable[[int], bytes], n: int) -> bytes:
    parts: list[bytes] = []
    while n > 0:
        part = read(min(n, READ_CHUNK))
        if not part:
            break
        parts.append(part)
        n -= len(part)
    return b"".join(parts)


def _parse(read: Callable[[int], bytes], name: str) -> np.ndarray:
    """Parse an IDX stream: magic 0x0000 + type 0x08 (uint8) + ndim, then big-endian dims, then the data."""
    head = read(4)
    if len(head) < 4:
        raise UsageError(f"{name} is truncated ({len(head)} bytes): download it again")
    if head[0:2] != b"\x00\x00" or head[2] != 0x08 or not 1 <= head[3] <= 4:
        raise UsageError(f"{name} is not a uint8 IDX file (bad magic number): "
                         f"point --data-dir at the Fashion-MNIST IDX files")
    ndim = head[3]
    raw_dims = read(4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise UsageError(f"{name} is truncated (header incomplete): download it again")
    dims = tuple(int.from_bytes(raw_dims[i:i + 4], "big") for i in range(0, 4 * ndim, 4))
    size = math.prod(dims)
    if size > MAX_IDX_BYTES:
        raise UsageError(f"{name}'s header promises shape {dims}, {size} bytes, more than the {MAX_IDX_BYTES} an "
                         f"IDX file may hold here: the header is damaged; download it again")
    data = _read_at_most(read, size + 1)
    if len(data) != size:
        held = "more" if len(data) > size else f"{4 + 4 * ndim + len(data)} bytes"
        raise UsageError(f"{name} is truncated or corrupt: its header promises {4 + 4 * ndim + size} bytes "
                         f"for shape {dims}, the file holds {held}; download it again")
    return np.frombuffer(data, np.uint8).reshape(dims)


def parse_idx(raw: bytes, name: str = "IDX data") -> np.ndarray:
    """An IDX file's bytes (not gzipped) as a uint8 array; a one-line UsageError if damaged."""
    return _parse(io.BytesIO(raw).read, name)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """An IDX file, gzipped or not, as a uint8 array; a one-line UsageError if missing or damaged."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path} does not exist: pass an IDX file, e.g. {FASHION_MNIST_TEST_IMAGES}")
    with open(path, "rb") as f:
        if f.read(2) != b"\x1f\x8b":
            f.seek(0)
            return _parse(f.read, str(path))
        f.seek(0)
        try:
            with gzip.GzipFile(fileobj=f) as unzipped:
                return _parse(unzipped.read, str(path))
        except (OSError, EOFError, zlib.error) as exc:
            raise UsageError(f"{path} is a corrupt or truncated gzip file ({exc}): download or reinstall it") from None
