"""checkpoint.npz read back as written, and every broken or crafted file refused in one line.

The model and optimizer here are stand-ins holding numpy arrays (what `checkpoint` touches of
Keras variables: path, shape, dtype, numpy(), assign()), so no TensorFlow is loaded.
"""
from __future__ import annotations

import dataclasses
import io
import json
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from alexnet import checkpoint
from alexnet.checkpoint import LoopState
from alexnet.data import Dealing
from toolkit.cli import UsageError

DEALING = Dealing(elastic=False, ranks=2, batch_size=16, seed=0, images=512)


@dataclasses.dataclass
class FakeVariable:
    path: str
    value: np.ndarray

    @property
    def shape(self):
        return self.value.shape

    @property
    def dtype(self):
        return str(self.value.dtype)

    def numpy(self):
        return self.value

    def assign(self, value):
        assert value.shape == self.value.shape and value.dtype == self.value.dtype
        self.value = np.array(value)


@dataclasses.dataclass
class FakeModel:
    variables: list


def fake_model(fill: float = 0.0) -> tuple[FakeModel, FakeModel]:
    model = FakeModel([FakeVariable("conv1/kernel", np.full((3, 3, 1, 4), fill, np.float32)),
                       FakeVariable("seed_generator/state", np.full((2,), int(fill), np.uint32))])
    optimizer = FakeModel([FakeVariable("sgd/iterations", np.full((), int(fill), np.int64))])
    return model, optimizer


MID_EPOCH = LoopState(epoch=1, step=6, sums=(1.0, 2.0, 3.0), images_seen=700, position=192)


def saved(tmp_path: Path) -> Path:
    path = tmp_path / checkpoint.FILENAME
    checkpoint.save(path, *fake_model(7.0), MID_EPOCH, DEALING)
    return path


def test_a_checkpoint_reads_back_as_written(tmp_path):
    path = saved(tmp_path)
    back = checkpoint.open_checkpoint(path)
    assert back.state == MID_EPOCH and back.dealing == DEALING
    model, optimizer = fake_model()
    back.restore(model, optimizer)
    assert (model.variables[0].value == 7).all() and model.variables[1].value.tolist() == [7, 7]
    assert optimizer.variables[0].value == 7
    meta, arrays = checkpoint.read_meta(path)
    assert meta["state"]["segments"] == [] and meta["dealing"]["ranks"] == 2 and sorted(arrays) == [
        "model_0", "model_1", "optimizer_0"]


def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def rewrite(path: Path, replace: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> None:
    """The checkpoint with some members' bytes replaced (None drops a member)."""
    parts = members(path) | replace
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, raw in parts.items():
            if raw is not None:
                zf.writestr(name, raw)


def npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def meta_bytes(meta) -> bytes:
    return npy(np.frombuffer(json.dumps(meta).encode(), np.uint8))


def header_claiming(shape: tuple[int, ...], dtype=np.float32) -> bytes:
    """A .npy header for `shape` followed by only 16 bytes of data."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": shape})
    return buf.getvalue() + b"\0" * 16


def valid_meta(path: Path) -> dict:
    return json.loads(np.load(io.BytesIO(members(path)["meta.npy"])).tobytes())


def crafted(tmp_path: Path, case: str) -> Path:
    """A checkpoint broken as `case` says."""
    path = saved(tmp_path)
    meta = valid_meta(path)
    if case == "empty":
        path.write_bytes(b"")
    elif case == "not a zip":
        path.write_bytes(b"PK\3\4 but not really a zip file")
    elif case == "meta a list":
        rewrite(path, {"meta.npy": meta_bytes([1, 2, 3])})
    elif case == "meta missing keys":
        rewrite(path, {"meta.npy": meta_bytes({"format": 2, "model": meta["model"]})})
    elif case == "meta wrong types":
        rewrite(path, {"meta.npy": meta_bytes(meta | {"state": meta["state"] | {"step": "six"}})})
    elif case == "negative step":
        rewrite(path, {"meta.npy": meta_bytes(meta | {"state": meta["state"] | {"step": -1}})})
    elif case == "meta not json":
        rewrite(path, {"meta.npy": npy(np.frombuffer(b"\xff{", np.uint8))})
    elif case == "no meta":
        rewrite(path, {"meta.npy": None})
    elif case == "no array":
        rewrite(path, {"model_1.npy": None})
    elif case == "wrong shape":
        rewrite(path, {"model_0.npy": npy(np.zeros((4, 3, 3, 1), np.float32))})
    elif case == "wrong dtype":
        rewrite(path, {"model_0.npy": npy(np.zeros((3, 3, 1, 4), np.float64))})
    elif case == "header claims 10^15 elements":
        rewrite(path, {"model_0.npy": header_claiming((10**15,))})
    elif case == "meta claims 10^15 elements":
        meta["model"][0][1] = [10**15]
        rewrite(path, {"meta.npy": meta_bytes(meta), "model_0.npy": header_claiming((10**15,))})
    elif case == "objects":
        rewrite(path, {"model_0.npy": npy(np.array([None] * 36, object).reshape(3, 3, 1, 4))})
    elif case == "compressed":
        rewrite(path, {}, zipfile.ZIP_DEFLATED)
    else:
        raise AssertionError(case)
    return path


CASES = ["empty", "not a zip", "meta a list", "meta missing keys", "meta wrong types", "negative step",
         "meta not json", "no meta", "no array", "wrong shape", "wrong dtype", "header claims 10^15 elements",
         "meta claims 10^15 elements", "objects", "compressed"]


@pytest.mark.parametrize("case", CASES)
def test_a_broken_or_crafted_checkpoint_is_one_line_and_allocates_nothing_it_claims(tmp_path, case):
    path = crafted(tmp_path, case)
    model, optimizer = fake_model()
    tracemalloc.start()
    try:
        with pytest.raises(UsageError) as refused:
            checkpoint.open_checkpoint(path).restore(model, optimizer)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(refused.value)
    assert "\n" not in message and str(path) in message, message
    assert "delete it" in message or "different model" in message, message
    assert peak < 8 << 20, f"{peak} bytes allocated"
    assert (model.variables[0].value == 0).all()  # nothing half-loaded


def test_a_newer_format_names_the_version_to_use(tmp_path):
    path = saved(tmp_path)
    rewrite(path, {"meta.npy": meta_bytes(valid_meta(path) | {"format": 3})})
    with pytest.raises(UsageError, match=r"has checkpoint format 3, this version reads 1, 2: resume with the version"):
        checkpoint.open_checkpoint(path)


def test_a_format_1_checkpoint_still_loads(tmp_path):
    path = saved(tmp_path)
    meta = valid_meta(path)
    del meta["dealing"]
    rewrite(path, {"meta.npy": meta_bytes(meta | {"format": 1})})
    back = checkpoint.open_checkpoint(path)
    assert back.dealing is None and back.state == MID_EPOCH
