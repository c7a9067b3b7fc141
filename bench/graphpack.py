"""An ONNX model as its graph alone, its large weights regenerated from a seed where it runs.

The exported AlexNet is 86 MB (float32), too large to keep in the repository for a GPU check that
must run offline; its graph is kilobytes. `pack` writes the graph with every large weight moved to
ONNX external data that does not exist yet, and a manifest (NAME.weights.json) that says, for each
such weight, its dtype, shape, place in the data file and the statistics of the real one (mean,
standard deviation, min, max). `unpack`, which needs numpy only (no onnx), draws each weight from a
normal distribution with those statistics, clipped to [min, max] (rounded for integer weights), with
a generator seeded by (seed, index): the same bytes on every machine. onnxruntime then loads the graph
with its data file beside it. Small tensors (shapes, biases, quantisation scales and zero points)
stay in the graph as they were, so the graph computes what the real one computes, on other weights:
enough for speed and for CUDA-against-CPU agreement, never for accuracy.

    python -m bench.graphpack runs/alexnet/alexnet.onnx runs/alexnet/alexnet.float16.onnx \\
        runs/alexnet/alexnet.int8.onnx --out scripts/gpu-check-models
    from bench.graphpack import unpack
    model = unpack("scripts/gpu-check-models/alexnet.graph.onnx", "/tmp/work")   # loadable by onnxruntime
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from toolkit import cli
from toolkit.cli import ArgumentParser, UsageError
from toolkit.files import read_json, write_bytes_atomic, write_json_atomic

MANIFEST_SCHEMA = "alexnet-toolkit/graphpack"
MANIFEST_VERSION = 1
GRAPH_SUFFIX = ".graph.onnx"
# Tensors this big or bigger travel as statistics; smaller ones (biases, scales, shapes) stay in the graph.
MIN_EXTERNAL_BYTES = 64 * 1024
# The dtypes whose values are weights, drawn from their statistics; others (int64 shapes, indices) never are.
REGENERATED = ("float32", "float16", "int8", "uint8")


def manifest_path(graph: str | os.PathLike) -> Path:
    """alexnet.int8.graph.onnx -> alexnet.int8.weights.json"""
    graph = Path(graph)
    return graph.with_name(graph.name.removesuffix(GRAPH_SUFFIX) + ".weights.json")


def variant_of(model: Path) -> str:
    """The export's naming (toolkit.runs.variant_path): alexnet.onnx float32, alexnet.int8.onnx int8."""
    parts = model.name.split(".")
    return parts[-2] if len(parts) > 2 else "float32"


def pack(model: str | os.PathLike, out_dir: str | os.PathLike, seed: int = 0) -> Path:
    """Write MODEL's graph (large weights external, their data file absent) and its manifest to OUT_DIR."""
    import onnx
    from onnx import external_data_helper, numpy_helper

    from toolkit.onnxfile import check_model_file

    model = check_model_file(model)
    proto = onnx.load(str(model))
    stem = model.name.removesuffix(".onnx")
    graph, data_name = Path(out_dir) / (stem + GRAPH_SUFFIX), stem + ".weights"
    tensors, offset = [], 0
    for tensor in proto.graph.initializer:
        array = numpy_helper.to_array(tensor)
        if array.nbytes < MIN_EXTERNAL_BYTES or array.dtype.name not in REGENERATED:
            continue
        values = array.astype(np.float64)
        tensors.append({"name": tensor.name, "dtype": array.dtype.name, "shape": list(array.shape),
                        "offset": offset, "length": array.nbytes, "mean": float(values.mean()),
                        "std": float(values.std()), "min": float(values.min()), "max": float(values.max())})
        # As raw bytes first (onnx sets external data on raw_data only), then without them: the values stay behind.
        tensor.CopyFrom(numpy_helper.from_array(array, tensor.name))
        external_data_helper.set_external_data(tensor, location=data_name, offset=offset, length=array.nbytes)
        tensor.data_location = onnx.TensorProto.EXTERNAL
        tensor.ClearField("raw_data")
        offset += array.nbytes
    if not tensors:
        raise UsageError(f"{model} has no weight of {MIN_EXTERNAL_BYTES // 1024} KiB or more: it travels as it is, "
                         "no pack needed")
    graph.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(graph, proto.SerializeToString())
    write_json_atomic(manifest_path(graph), {
        "schema": MANIFEST_SCHEMA, "version": MANIFEST_VERSION, "source": str(model), "variant": variant_of(model),
        "seed": seed, "data": data_name, "bytes": offset, "tensors": tensors})
    return graph


def read_manifest(graph: str | os.PathLike) -> dict[str, Any]:
    path = manifest_path(graph)
    doc = read_json(path, "graph pack manifest", f"re-run `python -m bench.graphpack MODEL --out {path.parent}`")
    if doc.get("schema") != MANIFEST_SCHEMA or doc.get("version") != MANIFEST_VERSION:
        raise UsageError(f"{path} is not a version {MANIFEST_VERSION} graph pack manifest: re-run "
                         "`python -m bench.graphpack MODEL --out DIR`")
    return doc


def regenerate(entry: dict[str, Any], seed: int, index: int) -> np.ndarray:
    """One weight from its statistics: normal(mean, std) clipped to [min, max], integers rounded."""
    rng = np.random.default_rng([seed, index])
    values = rng.normal(entry["mean"], entry["std"], size=tuple(entry["shape"]))
    values = np.clip(values, entry["min"], entry["max"])
    dtype = np.dtype(entry["dtype"])
    return (np.rint(values) if dtype.kind in "iu" else values).astype(dtype)


def unpack(graph: str | os.PathLike, work_dir: str | os.PathLike) -> Path:
    """The graph copied into WORK_DIR with its weights regenerated beside it; the model path to load."""
    graph, work_dir = Path(graph), Path(work_dir)
    if not graph.is_file():
        raise UsageError(f"no graph at {graph}: pass a file `python -m bench.graphpack` wrote (*{GRAPH_SUFFIX})")
    doc = read_manifest(graph)
    work_dir.mkdir(parents=True, exist_ok=True)
    model = work_dir / graph.name
    shutil.copyfile(graph, model)
    with open(work_dir / doc["data"], "wb") as data:
        for index, entry in enumerate(doc["tensors"]):
            if data.tell() != entry["offset"]:
                raise UsageError(f"{manifest_path(graph)}: tensor {entry['name']} is not at offset "
                                 f"{entry['offset']}: re-run `python -m bench.graphpack`")
            data.write(regenerate(entry, doc["seed"], index).tobytes())
    return model


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m bench.graphpack", description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", type=Path, help="ONNX files (e.g. the export's three variants)")
    parser.add_argument("--out", required=True, type=Path, help="directory for NAME.graph.onnx + NAME.weights.json")
    parser.add_argument("--seed", type=int, default=0, help="seed of the regenerated weights")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for model in args.models:
        graph = pack(model, args.out, args.seed)
        print(f"{graph} ({graph.stat().st_size / 1e3:.0f} kB; weights: {manifest_path(graph)})")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run("python -m bench.graphpack", main))
