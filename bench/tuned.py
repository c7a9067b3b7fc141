"""The settings file `bench tune` writes and the measuring subcommands read with `--config`.

    bench tune --model runs/alexnet/alexnet.onnx            # writes runs/alexnet/alexnet.tuned.json
    bench throughput --config runs/alexnet/alexnet.tuned.json          # the tuned model file, batch, session
    bench latency --config runs/alexnet/alexnet.tuned.json --batch 1  # a flag given on the command line wins

`throughput`, `latency`, `sweep`, `overhead`, `profile`, `compare` and `load` (every subcommand
built on the shared measuring options) take `--config`: every setting in the file that is not
given on the command line is used, the model included (the variant the tune chose, e.g.
alexnet.int8.onnx); `load` takes the batch as its samples per query. `compare` keeps its
reference model (the file's tuned model, not the variant) and takes the session settings and
batch. A file tuned for another model is refused: the file names the model and the sha256 of its
bytes (of the .onnx file itself; external data files are not hashed), and `--model` must be that
model or the variant the tune chose.

JSON (schema "alexnet-toolkit/bench-config", version 1; paths relative to the file's directory, beside or below
it, as ONNX external data: an absolute path or one with `..` is refused, so a file handed on cannot make bench
read or run a model elsewhere on the machine; `bench tune -o` therefore writes it beside the model or above):
    {"schema", "version", "created",
     "model": {"path", "sha256"},                  # the model that was tuned
     "run": {"path", "sha256", "variant"},          # the file the chosen setting runs
     "batch", "provider", "intra_op_threads", "inter_op_threads", "graph_optimization",
     "execution_mode", "session_entries": [[key, value], ...],
     "latency_budget_ms": float | null,
     "measured": {"samples_per_second", "p99_ms", "defaults_samples_per_second", "ratio"},
     "machine": {"cpu", "usable_cpus"}}
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
from pathlib import Path
from typing import Any

from bench.session import EXECUTION_MODES, GRAPH_OPTIMIZATION, parse_providers
from toolkit.cli import UsageError
from toolkit.files import read_json, schema_version, sha256_file, write_json_atomic
from toolkit.runs import decode, now_utc

SCHEMA = "alexnet-toolkit/bench-config"
VERSION = 1
FIX = "pass a file written by `bench tune`"


def default_path(model: str | os.PathLike) -> Path:
    """alexnet.onnx -> alexnet.tuned.json, beside the model."""
    path = Path(model)
    return path.with_name(f"{path.stem}.tuned.json")


@dataclasses.dataclass(frozen=True)
class TunedConfig:
    """The chosen setting; `model` and `run` are absolute here, relative to the file's directory in it."""

    model: Path
    model_sha256: str
    run: Path
    run_sha256: str
    variant: str
    batch: int
    provider: str
    intra_op_threads: int
    inter_op_threads: int
    graph_optimization: str
    execution_mode: str
    session_entries: tuple[tuple[str, str], ...]
    latency_budget_ms: float | None
    measured: dict[str, Any]
    machine: dict[str, Any]
    created: str = dataclasses.field(default_factory=now_utc)

    def __post_init__(self):
        """ValueError (`from_json` makes it the file's one line) for values no session could run with."""
        problems = [f"{name} {value} must be >= {low}" for name, value, low in (
            ("batch", self.batch, 1), ("intra_op_threads", self.intra_op_threads, 0),
            ("inter_op_threads", self.inter_op_threads, 0)) if value < low]
        budget = self.latency_budget_ms
        if budget is not None and not (math.isfinite(budget) and budget > 0):
            problems.append(f"latency_budget_ms {budget} must be a number > 0 or null")
        for name, value, known in (("graph_optimization", self.graph_optimization, GRAPH_OPTIMIZATION),
                                   ("execution_mode", self.execution_mode, EXECUTION_MODES)):
            if value not in known:
                problems.append(f"{name} {value!r} is not one of {', '.join(known)}")
        if problems:
            raise ValueError("; ".join(problems))
        try:
            parse_providers(self.provider)
        except UsageError as exc:
            raise ValueError(f"provider {self.provider!r}: {exc}") from None

    def to_json(self, directory: Path) -> dict[str, Any]:
        def relative(path: Path) -> str:
            return os.path.relpath(path.resolve(), directory.resolve())
        doc = dataclasses.asdict(self)
        for key in ("model", "model_sha256", "run", "run_sha256", "variant", "created"):
            doc.pop(key)
        return {"schema": SCHEMA, "version": VERSION, "created": self.created,
                "model": {"path": relative(self.model), "sha256": self.model_sha256},
                "run": {"path": relative(self.run), "sha256": self.run_sha256, "variant": self.variant},
                **doc, "session_entries": [list(e) for e in self.session_entries]}

    @classmethod
    def from_json(cls, doc: Any, directory: Path, source: str) -> "TunedConfig":
        schema_version(doc, SCHEMA, VERSION, source, "bench settings file", FIX)
        try:
            model, run = decode(_File, doc["model"], "model"), decode(_RunFile, doc["run"], "run")
            fields = {k: v for k, v in doc.items() if k not in ("schema", "version", "model", "run")}
            return decode(cls, {**fields, "model": _beside(directory, model.path, "model.path", source),
                                "model_sha256": model.sha256, "run": _beside(directory, run.path, "run.path", source),
                                "run_sha256": run.sha256, "variant": run.variant}, "settings")
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"{source} is a malformed bench settings file ({type(exc).__name__}: {exc}): "
                             "re-run `bench tune`") from None


@dataclasses.dataclass(frozen=True)
class _File:
    path: str
    sha256: str


@dataclasses.dataclass(frozen=True)
class _RunFile(_File):
    variant: str


def _beside(directory: Path, path: str, where: str, source: str) -> Path:
    """`path` from the file, relative to its directory and staying in it or below (module docstring)."""
    if Path(path).is_absolute() or ".." in Path(path).parts:
        raise UsageError(f"{source}: {where} {path!r} leaves the settings file's directory: a settings file "
                         "names models beside it or below it; re-run `bench tune` with -o beside the model")
    return directory / path


def check_location(settings_file: Path, model: Path) -> None:
    """`bench tune`'s refusal, before it measures, to write a file whose model path `read` would refuse."""
    relative = os.path.relpath(Path(model).resolve(), Path(settings_file).resolve().parent)
    if ".." in Path(relative).parts:
        raise UsageError(f"settings file {settings_file} is not beside or above {model}: a settings file names "
                         f"its model by a path below it; write it to {default_path(model)} (leave -o out)")


def write(path: str | os.PathLike, config: TunedConfig) -> None:
    path = Path(path)
    write_json_atomic(path, config.to_json(path.parent if str(path.parent) else Path(".")))


def read(path: str | os.PathLike) -> TunedConfig:
    path = Path(path)
    return TunedConfig.from_json(read_json(path, "settings file", FIX), path.parent, str(path))


def _unchanged(path: Path, digest: str, source: str) -> str:
    if not path.is_file() or sha256_file(path) != digest:
        raise UsageError(f"{path}, which --config {source} names, is missing or has changed since it was tuned: "
                         "re-run `bench tune`")
    return str(path)


def apply(args: argparse.Namespace, given: set[str], *, run_variant: bool = True) -> str:
    """Fill `args` from `args.config` wherever the command line gave nothing; returns a note saying so.

    `given`: the options typed on the command line (their dests). `run_variant`: run the variant the
    tune chose (False for `compare`, which measures the tuned model and its variants anyway).
    """
    config = read(args.config)
    if "model" in given:
        # A missing file is left to the session to refuse, with its usual message.
        digest = sha256_file(args.model) if Path(args.model).is_file() else None
        if digest is not None and digest not in (config.model_sha256, config.run_sha256):
            raise UsageError(f"--config {args.config} was tuned for {config.model} (sha256 "
                             f"{config.model_sha256[:12]}...), not {args.model}: run `bench tune --model "
                             f"{args.model}` or drop --config")
        if run_variant and digest == config.model_sha256:
            args.model = _unchanged(config.run, config.run_sha256, args.config)  # the variant the tune chose
    elif run_variant:
        args.model = _unchanged(config.run, config.run_sha256, args.config)
    else:
        args.model = _unchanged(config.model, config.model_sha256, args.config)
    values = {"batch": str(config.batch), "provider": config.provider, "intra_op_threads": config.intra_op_threads,
              "inter_op_threads": config.inter_op_threads, "graph_opt": config.graph_optimization,
              "execution_mode": config.execution_mode}
    for dest, value in values.items():
        if dest not in given:
            setattr(args, dest, value)
    # Entries given with --session-config come last, so they win key by key.
    args.session_config = [f"{k}={v}" for k, v in config.session_entries] + list(args.session_config)
    overridden = sorted("--" + dest.replace("_", "-") for dest in (*values, "session_config") if dest in given)
    return (f"settings from {args.config} (bench tune, {config.created}: {config.variant} {config.run.name}, "
            f"batch {config.batch})" + (f"; given on the command line: {', '.join(overridden)}" if overridden else ""))
