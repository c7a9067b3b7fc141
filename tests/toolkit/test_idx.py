"""The IDX reader's refusals of crafted headers, and what it may allocate for them."""
from __future__ import annotations

import gzip
import tracemalloc

import numpy as np
import pytest

from toolkit.cli import UsageError
from toolkit.idx import MAX_IDX_BYTES, parse_idx, read_idx


def traced(call):
    """(what `call()` returned, the peak bytes Python allocated while it ran)."""
    tracemalloc.start()
    try:
        return call(), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _header(*dims: int) -> bytes:
    return b"\x00\x00\x08" + bytes([len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)


def test_a_valid_file_gzipped_or_not_reads_back(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "plain").write_bytes(_header(2, 3, 4) + images.tobytes())
    (tmp_path / "zipped.gz").write_bytes(gzip.compress(_header(2, 3, 4) + images.tobytes()))
    for name in ("plain", "zipped.gz"):
        np.testing.assert_array_equal(read_idx(tmp_path / name), images)


def test_dimensions_whose_product_overflows_int64_are_one_line():
    """4 x 65536 multiplies out to 2**64, which numpy's int64 product wraps to 0: the 20-byte header alone
    looked complete, and reshaping 0 bytes to the promised shape was a ValueError traceback."""
    with pytest.raises(UsageError, match=r"header promises shape \(65536, 65536, 65536, 65536\), "
                                         r"18446744073709551616 bytes, more than"):
        parse_idx(_header(65536, 65536, 65536, 65536))


def test_a_header_over_the_bound_is_refused_before_reading(tmp_path):
    path = tmp_path / "big"
    path.write_bytes(_header(MAX_IDX_BYTES + 1))
    with pytest.raises(UsageError, match="the header is damaged; download it again"):
        read_idx(path)


def test_a_gzip_bomb_is_never_decompressed_past_what_the_header_promises(tmp_path):
    """64 MB of zeros behind a header promising 16 bytes, 64 kB gzipped: the reader used to decompress all of it."""
    path = tmp_path / "bomb.gz"
    path.write_bytes(gzip.compress(_header(4, 4) + bytes(64 << 20)))
    refused, peak = traced(lambda: pytest.raises(UsageError, read_idx, path))
    refused.match(r"promises 28 bytes for shape \(4, 4\), the file holds more")
    assert peak < 4 << 20, f"{peak} bytes allocated"
