"""Benchmark inputs generated from the model's own input signature.

Any rank and dtype. The first axis of every input is the batch axis when it is dynamic;
other dynamic axes are given by name (`--dim seq=128`) or a whole shape per input
(`--shape ids=8x128`); a size that contradicts a fixed dimension of the model is refused.
Data is fresh random (seeded), never zeros: zeros hit fast paths (denormal-free, sparse,
cached) that real inputs do not. `distinct` feeds are generated and cycled so consecutive
runs do not see the very same buffers. Real images: an IDX file (Fashion-MNIST's format).
Their size is checked before anything is allocated: feeds that would take more than half the memory
available (the model's activations and outputs need the rest) are refused unless forced (`--force`).

    specs = input_specs(session)
    shapes = resolve_shapes(specs, batch=32, dims={"seq": 128})
    feeds = make_feeds(specs, shapes, seed=0, distinct=4)
    InputConfig(dims=(("seq", 128),)).feeds(specs, 32)     # the same, as the options give it
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from toolkit.cli import UsageError
from toolkit.environment import available_memory_bytes
from toolkit.idx import read_idx

ORT_DTYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int16)": np.int16, "tensor(int8)": np.int8,
    "tensor(uint64)": np.uint64, "tensor(uint32)": np.uint32, "tensor(uint16)": np.uint16,
    "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_,
}
Dim = int | str | None  # fixed size, symbolic name, or unnamed dynamic


@dataclasses.dataclass(frozen=True)
class InputSpec:
    name: str
    dtype: str  # onnxruntime's type string, e.g. "tensor(float)"
    shape: tuple[Dim, ...]

    def to_json(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    @property
    def numpy_dtype(self) -> type:
        if self.dtype not in ORT_DTYPES:
            raise UsageError(f"input {self.name!r} has type {self.dtype}, which bench cannot generate: "
                             f"supported: {', '.join(t[7:-1] for t in ORT_DTYPES)}")
        return ORT_DTYPES[self.dtype]


@dataclasses.dataclass(frozen=True)
class InputConfig:
    """How inputs are made: dynamic dims, shapes, seed, how many distinct feeds, int range, real images."""

    dims: tuple[tuple[str, int], ...] = ()
    shapes: tuple[tuple[str, tuple[int, ...]], ...] = ()
    seed: int = 0
    distinct: int = 4
    int_range: tuple[int, int] = (1, 100)
    images: str | None = None
    force: bool = False             # allocate feeds larger than the memory check allows

    def __post_init__(self):
        if self.distinct < 1:
            raise UsageError(f"--distinct-inputs {self.distinct} must be >= 1")

    def feeds(self, specs: Sequence[InputSpec], batch: int) -> list[dict[str, np.ndarray]]:
        shapes = resolve_shapes(specs, batch, dict(self.dims), dict(self.shapes))
        images = read_idx_images(self.images) if self.images else None
        return make_feeds(specs, shapes, seed=self.seed, distinct=self.distinct, int_range=self.int_range,
                          images=images, force=self.force)


def input_specs(session) -> list[InputSpec]:
    # onnxruntime reports symbolic dims as their name and unnamed dynamic dims as None (or "").
    return [InputSpec(i.name, i.type, tuple(d if isinstance(d, int) and d >= 0 else (d or None) for d in i.shape))
            for i in session.get_inputs()]


def parse_assignments(items: Sequence[str], what: str, example: str) -> dict[str, str]:
    """`NAME=VALUE` pairs from repeated options; NAME may itself contain ':' or '/' (ONNX names do)."""
    out = {}
    for item in items:
        name, sep, value = item.rpartition("=")
        if not sep or not name or not value:
            raise UsageError(f"--{what} {item!r} is not NAME=VALUE: e.g. --{what} {example}")
        out[name] = value
    return out


def _positive(text: str, option: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"{option}: {text!r} is not an integer: give a positive size") from None
    if value < 1:
        raise UsageError(f"{option}: size {value} must be >= 1")
    return value


def parse_dims(items: Sequence[str]) -> dict[str, int]:
    dims = parse_assignments(items, "dim", "seq=128")
    return {name: _positive(v, f"--dim {name}") for name, v in dims.items()}


def parse_shapes(items: Sequence[str]) -> dict[str, tuple[int, ...]]:
    return {name: tuple(_positive(v, f"--shape {name}") for v in value.lower().split("x"))
            for name, value in parse_assignments(items, "shape", "images=8x28x28x1").items()}


def default_batch(specs: Sequence[InputSpec], fallback: int,
                  shapes: Mapping[str, tuple[int, ...]] | None = None) -> int:
    """The batch a --shape option gives, else the model's own where every batched input fixes it,
    else `fallback`."""
    shapes = shapes or {}
    firsts = {shapes[s.name][0] if s.name in shapes and shapes[s.name] else s.shape[0] for s in specs if s.shape}
    if len(firsts) == 1 and isinstance(first := next(iter(firsts)), int):
        return first
    return fallback


def resolve_shapes(specs: Sequence[InputSpec], batch: int, dims: Mapping[str, int] | None = None,
                   shapes: Mapping[str, tuple[int, ...]] | None = None) -> dict[str, tuple[int, ...]]:
    """Concrete shapes for every input; UsageError for anything missing or contradicting the model."""
    dims, shapes = dict(dims or {}), dict(shapes or {})
    if batch < 1:
        raise UsageError(f"batch size {batch} must be >= 1: pass --batch N with N >= 1")
    names = {s.name for s in specs}
    for name in shapes:
        if name not in names:
            raise UsageError(f"--shape names input {name!r}, which the model does not have: inputs are "
                             f"{', '.join(sorted(names))}")
    symbols = {d for s in specs for d in s.shape if isinstance(d, str)}
    for name in dims:
        if name not in symbols:
            raise UsageError(f"--dim names {name!r}, which is not a dynamic dimension of the model: "
                             f"dynamic dims are {', '.join(sorted(symbols)) or 'none'}")
    resolved = {}
    for spec in specs:
        if spec.name in shapes:
            resolved[spec.name] = _check_override(spec, shapes[spec.name])
            if spec.shape and not isinstance(spec.shape[0], int) and resolved[spec.name][0] != batch:
                raise UsageError(f"--shape {spec.name} sets batch {resolved[spec.name][0]} but --batch is {batch}: "
                                 "make them agree (or give the other dims with --dim)")
            continue
        shape = []
        for axis, dim in enumerate(spec.shape):
            if isinstance(dim, int):
                if axis == 0 and dim != batch:
                    raise UsageError(f"input {spec.name!r} has a fixed batch dimension of {dim}: "
                                     f"pass --batch {dim} (or export the model with a dynamic batch)")
                shape.append(dim)
            elif isinstance(dim, str) and dim in dims:
                shape.append(dims[dim])
            elif axis == 0:
                shape.append(batch)
                if isinstance(dim, str):
                    dims[dim] = batch  # the same symbol elsewhere means the same size
            else:
                label = f"{dim!r}" if dim else "(unnamed)"
                fix = f"--dim {dim}=N" if dim else f"--shape {spec.name}=" + "x".join(
                    str(d) if isinstance(d, int) else "N" for d in spec.shape)
                raise UsageError(f"input {spec.name!r} axis {axis} {label} is dynamic: give its size with {fix}")
        resolved[spec.name] = tuple(shape)
    return resolved


def _check_override(spec: InputSpec, shape: tuple[int, ...]) -> tuple[int, ...]:
    if len(shape) != len(spec.shape):
        raise UsageError(f"--shape {spec.name} has rank {len(shape)} but the model's input has rank "
                         f"{len(spec.shape)} {_show(spec.shape)}: give {len(spec.shape)} sizes")
    for axis, (want, got) in enumerate(zip(spec.shape, shape)):
        if isinstance(want, int) and want != got:
            raise UsageError(f"--shape {spec.name}: axis {axis} is fixed at {want} in the model, not {got}: "
                             f"use a shape matching {_show(spec.shape)}")
    return shape


def _show(shape: Sequence[Dim]) -> str:
    return "[" + ", ".join(str(d) if d is not None else "?" for d in shape) + "]"


def batch_of(specs: Sequence[InputSpec], shapes: Mapping[str, tuple[int, ...]]) -> int:
    """Samples per run: the first axis of the batched inputs (1 for a model of scalars)."""
    firsts = [shapes[s.name][0] for s in specs if shapes[s.name]]
    return max(firsts) if firsts else 1


def random_array(rng: np.random.Generator, shape: tuple[int, ...], dtype: type,
                 int_range: tuple[int, int]) -> np.ndarray:
    """Fresh random data of any dtype, never all zeros."""
    if np.issubdtype(dtype, np.floating):
        # Uniform in [0.01, 1): no zeros, no denormals, in a range every model accepts.
        return rng.uniform(0.01, 1.0, size=shape).astype(dtype)
    if dtype is np.bool_:
        array = rng.random(size=shape) < 0.5
        array.flat[0] = True
        return array
    info = np.iinfo(dtype)
    low, high = max(int_range[0], info.min), min(int_range[1], info.max + 1)
    return rng.integers(low, high, size=shape, dtype=dtype)


def parse_int_range(text: str) -> tuple[int, int]:
    try:
        low, high = (int(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"--int-range {text!r} is not LOW,HIGH: e.g. --int-range 1,1000") from None
    if high <= low or (low, high) == (0, 1):
        raise UsageError(f"--int-range {text!r} must have HIGH > LOW and allow a non-zero value")
    return low, high


def make_feeds(specs: Sequence[InputSpec], shapes: Mapping[str, tuple[int, ...]], *, seed: int = 0,
               distinct: int = 4, int_range: tuple[int, int] = (1, 100),
               images: np.ndarray | None = None, force: bool = False) -> list[dict[str, np.ndarray]]:
    """`distinct` independent feeds; with `images`, the image input takes consecutive real images.
    `force`: allocate them even where `check_memory` refuses."""
    if distinct < 1:
        raise UsageError(f"--distinct-inputs {distinct} must be >= 1")
    if not force:
        check_memory(feed_bytes(specs, shapes) * distinct, distinct, available_memory_bytes())
    rng = np.random.default_rng(seed)
    image_input = _image_input(specs, shapes, images) if images is not None else None
    feeds = []
    for index in range(distinct):
        feed: dict[str, np.ndarray] = {}
        for spec in specs:
            shape, dtype = shapes[spec.name], spec.numpy_dtype
            if images is not None and spec.name == image_input:
                feed[spec.name] = _take_images(images, shape, index).astype(dtype)
            else:
                feed[spec.name] = random_array(rng, shape, dtype, int_range)
        feeds.append(feed)
    return feeds


def feed_bytes(specs: Sequence[InputSpec], shapes: Mapping[str, tuple[int, ...]]) -> int:
    """The bytes of one feed, computed from the shapes (nothing allocated)."""
    return sum(math.prod(shapes[s.name]) * np.dtype(s.numpy_dtype).itemsize for s in specs)


def check_memory(total: int, distinct: int, available: int | None) -> None:
    """Refuse feeds of `total` bytes over half the `available` memory (None: unknown, not checked)."""
    if available is not None and total > available // 2:
        raise UsageError(f"the inputs would take {total / 2**30:,.1f} GiB ({distinct} distinct feeds), more than half "
                         f"the {available / 2**30:,.1f} GiB of memory available: lower --batch, the model's input "
                         "sizes (--dim/--shape) or --distinct-inputs, or pass --force to allocate them anyway")


def _image_input(specs: Sequence[InputSpec], shapes: Mapping[str, tuple[int, ...]], images: np.ndarray) -> str:
    pixels = math.prod(images.shape[1:])
    fits = [s.name for s in specs if len(shapes[s.name]) >= 2 and math.prod(shapes[s.name][1:]) == pixels]
    if len(fits) != 1:
        raise UsageError(f"--images holds {images.shape[1]}x{images.shape[2]} images but "
                         f"{'no' if not fits else 'more than one'} model input takes {pixels} values per sample: "
                         "use random inputs (drop --images) or a model with one such image input")
    return fits[0]


def _take_images(images: np.ndarray, shape: tuple[int, ...], index: int) -> np.ndarray:
    batch = shape[0]
    rows = (np.arange(batch) + index * batch) % len(images)
    return images[rows].reshape(shape)


def read_idx_images(path: str | Path) -> np.ndarray:
    """Images from an IDX file (Fashion-MNIST's format, gzipped or not), as uint8 (N, H, W)."""
    images = read_idx(path)
    if images.ndim != 3:
        raise UsageError(f"--images {path} holds {images.ndim}-d data, not an IDX3 image file: "
                         f"pass e.g. t10k-images-idx3-ubyte.gz")
    return images
