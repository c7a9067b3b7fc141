"""The int8 choices side by side: each quantisation choice's agreement with float32 and its speed, one run.

    python -m export.int8study runs/alexnet/alexnet.onnx --dataset fashion_mnist --samples 2000
    python -m export.int8study alexnet.onnx --dataset fashion_mnist --batch 1,32 --rounds 3 --output study.json

For each configuration (CONFIGS: the default of export.variants and one change from it at a time:
logits in int8, per-tensor weights, the QOperator format, int8 activations, 7-bit weights,
entropy or percentile calibration, only Conv and Gemm quantized, fewer or more calibration
images) it builds the int8 variant of the float32 file with export.variants.to_int8, calibrated
on the first N training images, and measures
  * top-1 agreement and max |diff| with the float32 file on `--samples` test images;
  * throughput under onnxruntime at each `--batch` with the benchmark's session defaults
    (bench/session.py), every variant and the float32 file taking turns for `--rounds` rounds
    in this one process (all of them onnxruntime: no runtime's threads tax another's).
README "int8: the choices" is this table; DEFAULT_INT8 is the row it chose. Writes the record
(configurations, results, machine, versions) to --output.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from rich.table import Table  # noqa: E402

from toolkit import cli  # noqa: E402
from toolkit.constants import REAL_DATASETS  # noqa: E402
from toolkit.environment import collect  # noqa: E402
from toolkit.files import require_parent_dir, write_json_atomic  # noqa: E402

DEFAULT_OUTPUT = "runs/int8-study.json"


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    name: str
    change: dict                 # Int8Options fields changed from the default
    calibration_samples: int | None = None    # None: --calibration-samples


CONFIGS = (
    StudyConfig("default", {}),
    StudyConfig("int8 logits", {"float_logits": False}),
    StudyConfig("per-tensor weights", {"per_channel": False}),
    StudyConfig("QOperator format", {"quant_format": "QOperator"}),
    StudyConfig("s8s8 (int8 activations)", {"activations": "int8", "extra": (("ActivationSymmetric", True),)}),
    StudyConfig("reduce range (7-bit)", {"reduce_range": True}),
    StudyConfig("entropy calibration", {"calibration": "entropy"}),
    StudyConfig("percentile calibration", {"calibration": "percentile"}),
    StudyConfig("only Conv, Gemm", {"op_types": ("Conv", "Gemm")}),
    StudyConfig("256 calibration images", {}, 256),
    StudyConfig("2000 calibration images", {}, 2000),
)


def parser() -> cli.ArgumentParser:
    p = cli.ArgumentParser(prog="export.int8study", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="the float32 ONNX file (as python -m export writes it)")
    p.add_argument("--dataset", required=True, choices=REAL_DATASETS, help="real images to calibrate and verify on")
    p.add_argument("--data-dir", help="local dataset directory (default: the dataset's usual place)")
    p.add_argument("--samples", type=int, default=2000, help="test images for the agreement (default: %(default)s)")
    p.add_argument("--calibration-samples", type=int, default=512,
                   help="training images to calibrate on (default: %(default)s)")
    p.add_argument("--batch", default="1,32", help="batch sizes to time, comma-separated (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=3,
                   help="timing rounds, the models taking turns (default: %(default)s)")
    p.add_argument("--min-time", type=float, default=3.0, help="seconds per model per round (default: %(default)s)")
    p.add_argument("--only", help="comma-separated configuration names (default: all)")
    p.add_argument("--output", default=DEFAULT_OUTPUT, help="the JSON record (default: %(default)s)")
    return p


def _inputs(model_path: str, dataset: str, data_dir: str | None, split: str, count: int):
    from export import samples
    from toolkit.onnxfile import load_session

    session = load_session(model_path)
    spec = session.get_inputs()[0]
    shape = [None if not isinstance(d, int) else d for d in spec.shape]
    dtype = {"tensor(uint8)": "uint8", "tensor(float)": "float32"}[spec.type]
    images = samples.fit_to_input(samples.dataset_images(dataset, data_dir, split, count), shape, dtype)
    if len(images) < count:
        raise cli.UsageError(f"{dataset} {split} has {len(images)} images, fewer than {count}: ask for fewer")
    return images


def _throughputs(paths: dict[str, Path], batches: list[int], rounds: int, min_time: float) -> dict:
    """samples/s per (name, batch): the models take turns, `rounds` times, each `min_time` s a round."""
    from bench.engines import OnnxEngine
    from bench.inputs import InputConfig
    from bench.runner import RunConfig, measure
    from bench.session import SessionConfig

    engines = {name: OnnxEngine.open(path, SessionConfig()) for name, path in paths.items()}
    rates: dict[tuple[str, int], list[float]] = {}
    for batch in batches:
        steps = {name: e.step(e.prepare(batch, InputConfig())) for name, e in engines.items()}
        for index in range(rounds):
            for name, step in steps.items():
                times = measure(step, RunConfig(warmup=2 if index == 0 else 0, min_time=min_time, min_iterations=3))
                rates.setdefault((name, batch), []).append(batch * len(times) / sum(times))
    return {key: statistics.median(values) for key, values in rates.items()}


def run(args) -> dict:
    from export.variants import DEFAULT_INT8, to_int8
    from export.verify import compare, run_onnx

    batches = [int(b) for b in args.batch.split(",")]
    configs = [c for c in CONFIGS if not args.only or c.name in args.only.split(",")]
    if not configs:
        raise cli.UsageError(f"--only {args.only}: no such configuration; names: {', '.join(c.name for c in CONFIGS)}")
    test = _inputs(args.model, args.dataset, args.data_dir, "test", args.samples)
    most = max(c.calibration_samples or args.calibration_samples for c in configs)
    calibration = _inputs(args.model, args.dataset, args.data_dir, "train", most)
    reference = run_onnx(args.model, test)
    rows = []
    with tempfile.TemporaryDirectory(prefix="int8study-") as tmp:
        paths = {"float32": Path(args.model)}
        for index, config in enumerate(configs):
            path = Path(tmp) / f"{index}.int8.onnx"
            options = dataclasses.replace(DEFAULT_INT8, **config.change)
            started = time.perf_counter()
            to_int8(args.model, path, calibration[:config.calibration_samples or args.calibration_samples],
                    options=options)
            built = time.perf_counter() - started
            agreement = compare(config.name, "float32", reference, run_onnx(path, test))
            rows.append({"name": config.name, "options": dataclasses.asdict(options),
                         "calibration_samples": config.calibration_samples or args.calibration_samples,
                         "build_seconds": built, "vs_float32": agreement.to_json(),
                         "size_bytes": path.stat().st_size})
            paths[config.name] = path
        rates = _throughputs(paths, batches, args.rounds, args.min_time)
    for row in rows:
        row["samples_per_second"] = {str(b): rates[(row["name"], b)] for b in batches}
        row["speedup_vs_float32"] = {str(b): rates[(row["name"], b)] / rates[("float32", b)] for b in batches}
    return {"model": args.model, "dataset": args.dataset, "samples": args.samples, "batches": batches,
            "rounds": args.rounds, "float32_samples_per_second": {str(b): rates[("float32", b)] for b in batches},
            "configurations": rows, "environment": collect()}


def table(record: dict) -> Table:
    t = Table(title=f"int8 choices: agreement with float32 on {record['samples']} {record['dataset']} test images; "
                    f"onnxruntime samples/s (x float32), median of {record['rounds']} rounds")
    for column in ("configuration", "top-1 = float32", "max |diff|", *(f"batch {b}" for b in record["batches"])):
        t.add_column(column, justify="left" if column == "configuration" else "right")
    t.add_row("float32", "-", "-", *(f"{record['float32_samples_per_second'][str(b)]:,.1f}" for b in record["batches"]))
    for row in record["configurations"]:
        t.add_row(row["name"], f"{row['vs_float32']['top1_agreement']:.2%}", f"{row['vs_float32']['max_abs_diff']:.3f}",
                  *(f"{row['samples_per_second'][str(b)]:,.1f} ({row['speedup_vs_float32'][str(b)]:.2f}x)"
                    for b in record["batches"]))
    return t


def _main(argv) -> int:
    args = parser().parse_args(argv)
    require_parent_dir(args.output)
    if not Path(args.model).is_file():
        raise cli.UsageError(f"{args.model} does not exist: export one with `python -m export MODEL -o {args.model}`")
    record = run(args)
    write_json_atomic(args.output, record)
    cli.console().print(table(record))
    return 0


def main(argv=None) -> int:
    return cli.run("export.int8study", _main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
