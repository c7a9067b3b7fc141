"""The exported file: the metadata that makes it self-describing, and its one write.

    from export.writing import write
    written = write(converted, "runs/alexnet/alexnet.onnx", source, nchw=False, check=float32_check)
    written.metadata, written.input.dtype, written.input.shape, written.input.description

Why metadata: an ONNX file travels without its Keras model and training run, so it carries
what a caller needs to use it (the input it expects and the preprocessing, the layout, the
class names) and what traces it back (sha256 of the source file, converter, versions).

Why one write: the file goes to disk only through `toolkit.onnxfile.write_checked`: under a
temporary name, onnx.checker (full check), an onnxruntime load, then the caller's `check`
(in the export, `export.verify.FileCheck`: outputs against Keras within tolerance), and the
rename last. A file under the final name has passed every one of them, and nothing writes
it a second time.

Why a staged set: an export is several files (OUT.onnx, its variants, the record OUT.onnx.json),
and renaming them into place one by one as each is made let a re-export killed half-way leave
the new OUT.onnx beside the old OUT.float16.onnx and the old record. `staged(OUT)` gives a
directory beside OUT to write the whole set in; `StagedSet.commit` then writes the record first
(naming every file's sha256), renames the files over the old ones and removes the old export's
variants that this one does not make. Killed before the record's rename, the old set is whole;
after the last file's, the new one; in between, the record's hashes disagree with the files and
readers (`toolkit.runs.ExportRecord.read`, `check_exported_file`) refuse the set in one line.
A staging directory is named for its host and process: the next export to the same output
removes those of processes that are gone from this host (killed exports leave one each).

    with staged("runs/alexnet/alexnet.onnx") as stage:
        write(converted, stage.path("alexnet.onnx"), source, nchw=False)
        stage.commit(record)
"""
from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import onnx
import onnxruntime as ort
import tf2onnx
from onnx import helper

from export.conversion import Converted
from export.source import Source
from toolkit.environment import package_versions, pid_alive
from toolkit.files import fsync_path, sha256_file
from toolkit.onnxfile import write_checked
from toolkit.runs import VARIANTS, ExportRecord, export_record_path, variant_path


@dataclass(frozen=True)
class OnnxInput:
    """The exported graph's input as a caller must feed it."""

    dtype: str
    shape: list[Any]                  # as the ONNX input declares it ("batch" first)
    layout: str                       # "NHWC" or "NCHW"
    description: str                  # what the input must be (see Preprocessing.describe)


@dataclass(frozen=True)
class Written:
    """What `write` put in the file besides the graph."""

    input: OnnxInput
    metadata: dict[str, str]


def onnx_input(proto: onnx.ModelProto, source: Source, nchw: bool) -> OnnxInput:
    tensor_type = proto.graph.input[0].type.tensor_type
    dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)).name
    shape = [d.dim_param or d.dim_value for d in tensor_type.shape.dim]
    layout = "NCHW" if nchw else "NHWC"
    return OnnxInput(dtype, shape, layout, source.preprocessing.describe(dtype, shape[1:], layout))


def metadata(source: Source, model_input: OnnxInput, method: str, rewrites: dict[str, int]) -> dict[str, str]:
    """The file's metadata_props (see the module docstring); `rewrites`: export.rewrite's passes run."""
    versions = package_versions()
    return {
        "preprocessing": model_input.description,
        "input_layout": model_input.layout,
        "class_names": json.dumps(source.class_names),
        "source_sha256": source.sha256 or "",
        "source_model": source.model.name,
        "converter": f"export.convert ({method} path), tf2onnx {tf2onnx.__version__}",
        "rewrites": json.dumps(rewrites),
        "versions": json.dumps({k: versions[k] for k in ("tensorflow", "keras", "tf2onnx", "onnx") if k in versions}
                               | {"onnxruntime": ort.__version__}),
    }


def write(converted: Converted, path: str | os.PathLike, source: Source, *, nchw: bool,
          check: Callable[[Path], None] | None = None, rewrites: dict[str, int] | None = None) -> Written:
    """Add the metadata to `converted` and write it once, checked (see the module docstring)."""
    proto = converted.proto
    model_input = onnx_input(proto, source, nchw)
    props = metadata(source, model_input, converted.method, rewrites or {})
    helper.set_model_props(proto, props)
    proto.doc_string = (f"{source.model.name} exported by alexnet-toolkit export.convert; "
                        f"input: {model_input.description}")
    write_checked(proto, path, check)
    return Written(model_input, props)


class StagedSet:
    """The files of one export, written in a directory beside the output, put in place by `commit`."""

    def __init__(self, output: Path, directory: Path):
        self.output = output
        self.directory = directory

    def path(self, final: str | os.PathLike) -> Path:
        """Where to write the file that will be called `final` (beside the output)."""
        return self.directory / Path(final).name

    def sha256(self, final: str | os.PathLike) -> str:
        return sha256_file(self.path(final))

    def commit(self, record: ExportRecord) -> None:
        """Record first, then the files, then the old variants this export does not make (see the module docstring)."""
        record.write(export_record_path(self.output))
        for entry in record.files:
            os.replace(self.path(entry.name), self.output.with_name(entry.name))
        made = {entry.name for entry in record.files}
        for variant in VARIANTS:
            old = variant_path(self.output, variant)
            if old.name not in made:
                old.unlink(missing_ok=True)
        fsync_path(self.output.parent)


def _remove_leftovers(output: Path, host: str) -> None:
    """Staging directories of `output` whose process (on this host) is gone: what killed exports left."""
    prefix = f".{output.name}."
    for directory in output.parent.glob(f"{glob.escape(prefix)}*.export"):
        owner = directory.name[len(prefix):-len(".export")].rsplit(".", 2)
        if len(owner) == 3 and owner[0] == host and owner[1].isdigit() and not pid_alive(int(owner[1])):
            shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def staged(output: str | os.PathLike) -> Iterator[StagedSet]:
    """A `StagedSet` for `output`; its directory is removed when the block ends, committed or not."""
    output = Path(output)
    host = socket.gethostname()
    _remove_leftovers(output, host)
    directory = Path(tempfile.mkdtemp(prefix=f".{output.name}.{host}.{os.getpid()}.", suffix=".export",
                                      dir=output.parent))
    try:
        yield StagedSet(output, directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
