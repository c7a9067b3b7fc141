"""Stock tf2onnx vs our fast path, on the full 58M-parameter AlexNet, side by side in one run.

    python -m export.benchmark                                   # full AlexNet, 227 px, random weights
    python -m export.benchmark --model runs/alexnet/model.keras  # a trained model instead
    python -m export.benchmark --image-size 67 --output /tmp/b.json

Both paths run through the same `export.convert.export_keras` as `python -m export`
does (convert; write under a temporary name; onnx checker with full_check, onnxruntime
load and the outputs' verification against Keras on the same inputs; rename), timed
from start to the file in place; the stock path is `tf2onnx.convert.from_function` on a
function that captures the model's variables, as tf2onnx documents. A tiny model is
exported by both paths first, so neither pays TensorFlow's one-off start-up. Writes
JSON (both times, the ratio, the outputs' agreement, machine and versions).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from rich.table import Table  # noqa: E402

from toolkit import cli  # noqa: E402
from toolkit.constants import MIN_IMAGE_SIZE  # noqa: E402
from toolkit.environment import collect  # noqa: E402
from toolkit.files import require_parent_dir, write_json_atomic  # noqa: E402

TARGET_RATIO = 1 / 3
DEFAULT_OUTPUT = "runs/export-benchmark.json"


def _timed_export(model, path: Path, method: str, inputs, reference) -> dict:
    """One export as `python -m export` makes it: the outputs are verified before the file is in place."""
    from export.convert import export_keras
    from export.verify import FileCheck

    started = time.perf_counter()
    check = FileCheck(path.name, inputs, reference)
    result = export_keras(model, path, method=method, check=check)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "convert_seconds": result.timings["convert"], "timings": result.timings,
            "method": result.method, "size_bytes": result.size_bytes, "vs_keras": check.checked_vs_keras.to_json(),
            "outputs": check.outputs}


def run_benchmark(model, samples: int = 32, seed: int = 0) -> dict:
    """Export `model` both ways in one process; the ratio is fast / stock, total seconds."""
    import keras

    from export.samples import random_inputs
    from export.verify import compare, run_keras

    shape, dtype = tuple(model.inputs[0].shape), str(model.inputs[0].dtype)
    inputs = random_inputs(shape, dtype, samples, seed)
    reference = run_keras(model, inputs)
    with tempfile.TemporaryDirectory(prefix="export-benchmark-") as tmp_name:
        tmp = Path(tmp_name)
        tiny = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        for method in ("stock", "fast"):
            _timed_export(tiny, tmp / f"warmup-{method}.onnx", method, random_inputs((None, 4), "float32", 2),
                          run_keras(tiny, random_inputs((None, 4), "float32", 2)))
        stock = _timed_export(model, tmp / "stock.onnx", "stock", inputs, reference)
        fast = _timed_export(model, tmp / "fast.onnx", "fast", inputs, reference)
    agreement = compare("fast.onnx", "stock.onnx", stock.pop("outputs"), fast.pop("outputs"))
    ratio = fast["seconds"] / stock["seconds"]
    return {
        "model": {"name": model.name, "parameters": int(model.count_params()), "input_shape": list(shape),
                  "input_dtype": dtype},
        "verification_inputs": f"{samples} random inputs (seed {seed})",
        "stock": stock, "fast": fast, "fast_vs_stock": agreement.to_json(),
        "ratio": ratio, "target_ratio": TARGET_RATIO, "target_met": ratio <= TARGET_RATIO,
        "environment": collect(),
    }


def _table(record: dict) -> Table:
    t = Table(title=f"{record['model']['name']} ({record['model']['parameters']:,} parameters): "
                    f"export + check + verify, one run")
    for column in ("path", "total s", "convert s", "max |diff| vs Keras", "method used"):
        t.add_column(column, justify="left" if column in ("path", "method used") else "right")
    for name in ("stock", "fast"):
        r = record[name]
        t.add_row(name, f"{r['seconds']:.1f}", f"{r['convert_seconds']:.1f}", f"{r['vs_keras']['max_abs_diff']:.1e}",
                  r["method"])
    return t


def _main(argv) -> int:
    p = cli.ArgumentParser(prog="export.benchmark", description=__doc__.split("\n\n")[0],
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", help="a .keras file (default: a freshly built AlexNet with random weights)")
    p.add_argument("--image-size", type=int, default=227, help="AlexNet's image size when building it")
    p.add_argument("--samples", type=int, default=32, help="random inputs to verify both exports on")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default=DEFAULT_OUTPUT, help="the JSON record to write")
    args = p.parse_args(argv)
    if args.samples < 1:
        raise cli.UsageError(f"--samples must be at least 1, got {args.samples}")
    if not args.model and args.image_size < MIN_IMAGE_SIZE:
        raise cli.UsageError(f"--image-size {args.image_size} is too small for AlexNet: use at least "
                             f"{MIN_IMAGE_SIZE}")
    if args.output == DEFAULT_OUTPUT:
        Path(DEFAULT_OUTPUT).parent.mkdir(exist_ok=True)     # runs/: the toolkit's own output directory
    output = require_parent_dir(args.output)

    if args.model:
        from toolkit.kerasfile import load_keras

        model = load_keras(args.model)
    else:
        import keras

        from alexnet.model import build_alexnet

        keras.utils.set_random_seed(args.seed)
        model = build_alexnet(image_size=args.image_size, input_shape=(28, 28, 1))
    record = run_benchmark(model, args.samples, args.seed)
    write_json_atomic(output, record)
    console = cli.console()
    console.print(_table(record))
    cpu = record["environment"]["cpu"]
    agreement = record["fast_vs_stock"]
    console.print(f"ratio fast/stock {record['ratio']:.3f} (target <= {TARGET_RATIO:.2f}: "
                  f"{'met' if record['target_met'] else 'NOT met'}); fast vs stock outputs: max |diff| "
                  f"{agreement['max_abs_diff']:.1e}, top-1 agreement {agreement['top1_agreement']:.2%}")
    console.print(f"machine: {cpu['model']}, {cpu['usable_cores']} usable cores; "
                  + ", ".join(f"{k} {v}" for k, v in record["environment"]["packages"].items()))
    console.print(f"wrote {output}")
    return 0


def main(argv=None) -> int:
    return cli.run("export.benchmark", _main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
