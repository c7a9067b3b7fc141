"""Training images/s three ways, side by side in one run: the tutorial's, ours at float32, ours at auto.

    python -m alexnet.benchmark                       # 227 px, batch 32, 40 timed steps, 3 rounds
    python -m alexnet.benchmark --rounds 1 --steps 10 --image-size 67 --json runs/train-benchmark.json

  tutorial      host-side standardise + grey->RGB + resize in a plain `map` (no parallel calls,
                no prefetch), `model.fit`, float32, batch 32: the tutorial's pipeline.
  ours float32  `python -m alexnet.train --precision float32`: uint8 images shipped to the model,
                which preprocesses on the device; parallel tf.data with prefetch; our loop.
  ours auto     `python -m alexnet.train` with its defaults: the same, at --precision auto
                (mixed_bfloat16 on CPUs with AVX512_BF16/AMX, mixed_float16 on tensor-core GPUs).

The ratios separate the two gains: `pipeline` = ours float32 / tutorial (same float32 math,
another input pipeline and loop), `precision` = ours auto / ours float32 (same pipeline,
another precision), `total` = ours auto / tutorial. All three train on real Fashion-MNIST, one
process each, at the same image size and batch. Each way runs in its own process (TensorFlow
keeps thread pools and caches per process), and the ways take turns for --rounds rounds so a
change in machine load hits all three; the median of the rounds is reported.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from toolkit import cli, environment  # noqa: E402
from toolkit.constants import MIN_IMAGE_SIZE  # noqa: E402
from toolkit.files import require_parent_dir, write_json_atomic  # noqa: E402
from toolkit.runs import RunDir  # noqa: E402


@dataclass(frozen=True)
class Way:
    key: str                    # in the JSON
    label: str                  # in the table
    pipeline: str
    precision: str | None       # ours: the --precision flag; None: the tutorial's float32 model.fit


WAYS = (
    Way("tutorial", "tutorial", "host resize, map, model.fit", None),
    Way("ours_float32", "ours float32", "uint8 in, resize in model, prefetch", "float32"),
    Way("ours_auto", "ours auto", "uint8 in, resize in model, prefetch", "auto"),
)
# name: (numerator, denominator), each the key of a way.
RATIOS = {"pipeline": ("ours_float32", "tutorial"), "precision": ("ours_auto", "ours_float32"),
          "total": ("ours_auto", "tutorial")}


@dataclass(frozen=True)
class Sizes:
    image_size: int
    batch: int
    warmup: int
    steps: int


def tutorial_worker(sizes: Sizes) -> float:
    """The tutorial's training loop, timed per batch; returns images/s after warm-up."""
    import keras
    import tensorflow as tf

    from alexnet import data
    from alexnet.model import build_alexnet

    arrays = data.load_fashion_mnist()
    n = (sizes.warmup + sizes.steps) * sizes.batch
    x, y = arrays.x_train[5000:5000 + n], arrays.y_train[5000:5000 + n]

    def preprocess(image, label):
        image = tf.image.per_image_standardization(tf.cast(image, tf.float32))
        image = tf.repeat(image, 3, axis=-1)  # Fashion-MNIST is grey; the tutorial's CIFAR is RGB
        return tf.image.resize(image, (sizes.image_size, sizes.image_size)), label

    ds = (tf.data.Dataset.from_tensor_slices((x, y)).map(preprocess)
          .shuffle(len(x)).batch(sizes.batch, drop_remainder=True))
    keras.mixed_precision.set_global_policy("float32")
    model = build_alexnet(10, sizes.image_size)
    model.compile(loss="sparse_categorical_crossentropy", optimizer=keras.optimizers.SGD(0.001),
                  metrics=["accuracy"])
    stamps: list[float] = []
    timer = keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: stamps.append(time.perf_counter()))
    model.fit(ds, epochs=1, verbose=0, callbacks=[timer])
    return sizes.steps * sizes.batch / (stamps[-1] - stamps[sizes.warmup - 1])


def _run(cmd: list[str], what: str) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise cli.CheckFailed(f"{what} failed (exit {result.returncode}): {last}")
    return result


def tutorial(sizes: Sizes) -> tuple[float, str]:
    result = _run([sys.executable, "-m", "alexnet.benchmark", "--worker", "--image-size", str(sizes.image_size),
                   "--batch-size", str(sizes.batch), "--warmup", str(sizes.warmup), "--steps", str(sizes.steps)],
                  "the tutorial's run")
    return float(result.stdout.strip().splitlines()[-1]), "float32"


def ours(sizes: Sizes, precision: str) -> tuple[float, str]:
    """Images/s of `python -m alexnet.train` at `precision`, and the policy it resolved to."""
    with tempfile.TemporaryDirectory() as tmp:
        _run([sys.executable, "-m", "alexnet.train", "--dataset", "fashion_mnist", "--precision", precision,
              "--image-size", str(sizes.image_size), "--batch-size", str(sizes.batch), "--epochs", "1",
              "--train-samples", str((sizes.warmup + sizes.steps) * sizes.batch),
              "--validation-samples", str(sizes.batch), "--test-samples", str(sizes.batch),
              "--warmup-steps", str(sizes.warmup), "--log-every", str(sizes.steps), "--no-progress",
              "--output-dir", tmp], f"alexnet.train --precision {precision}")
        summary = RunDir(tmp).read_summary()
        if summary.images_per_second is None:
            raise RuntimeError(f"alexnet.train --precision {precision}: too few steps after warm-up to measure; "
                               "raise --steps")
        return summary.images_per_second, summary.precision


def measure(way: Way, sizes: Sizes) -> tuple[float, str]:
    return tutorial(sizes) if way.precision is None else ours(sizes, way.precision)


def parse(argv) -> argparse.Namespace:
    p = cli.ArgumentParser(prog="alexnet.benchmark", description=__doc__.split("\n\n")[0])
    p.add_argument("--image-size", type=int, default=227)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--warmup", type=int, default=5, help="steps not timed")
    p.add_argument("--steps", type=int, default=40, help="steps timed")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for name in ("batch_size", "warmup", "steps", "rounds"):
        if getattr(args, name) < 1:
            raise cli.UsageError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.image_size < MIN_IMAGE_SIZE:
        raise cli.UsageError(f"--image-size {args.image_size} is too small for AlexNet's three max-pools: "
                             f"use at least {MIN_IMAGE_SIZE}")
    if args.json:
        require_parent_dir(args.json)
    return args


def run_rounds(sizes: Sizes, rounds: int, console) -> tuple[dict[str, list[float]], dict[str, str]]:
    """Images/s of every way in every round (the ways take turns), and the policy each resolved to."""
    results: dict[str, list[float]] = {way.key: [] for way in WAYS}
    policies: dict[str, str] = {}
    for i in range(rounds):
        for way in WAYS:
            ips, policies[way.key] = measure(way, sizes)
            results[way.key].append(ips)
        console.print(f"round {i + 1}/{rounds}: " + ", ".join(
            f"{way.label} {results[way.key][-1]:.1f} img/s ({policies[way.key]})" for way in WAYS))
    return results, policies


def render(console, sizes: Sizes, results, policies, medians, ratios, env) -> None:
    from rich.table import Table

    table = Table(title=f"Training throughput, AlexNet {sizes.image_size} px, batch {sizes.batch}, 1 process")
    for col in ("way", "pipeline", "precision", "img/s (median)", "rounds", "x tutorial"):
        table.add_column(col)
    for way in WAYS:
        table.add_row(way.label, way.pipeline, policies[way.key], f"{medians[way.key]:.1f}",
                      ", ".join(f"{v:.1f}" for v in results[way.key]),
                      f"{medians[way.key] / medians['tutorial']:.2f}x")
    console.print(table)
    console.print(f"pipeline (ours float32 / tutorial) [bold]{ratios['pipeline']:.2f}x[/], "
                  f"precision (ours auto / ours float32) [bold]{ratios['precision']:.2f}x[/], "
                  f"total (ours auto / tutorial) [bold]{ratios['total']:.2f}x[/]")
    console.print(f"on {env['cpu']['model']} ({env['cpu']['usable_cores']} cores), "
                  f"TensorFlow {env['packages'].get('tensorflow')}")


def _main(argv) -> int:
    args = parse(argv)
    sizes = Sizes(args.image_size, args.batch_size, args.warmup, args.steps)
    if args.worker:
        print(tutorial_worker(sizes))
        return 0
    console = cli.console(stderr=True)
    results, policies = run_rounds(sizes, args.rounds, console)
    medians = {key: statistics.median(values) for key, values in results.items()}
    ratios = {name: medians[num] / medians[den] for name, (num, den) in RATIOS.items()}
    env = environment.collect()
    render(console, sizes, results, policies, medians, ratios, env)
    if args.json:
        write_json_atomic(args.json, {"rounds": results, "median_images_per_second": medians, "ratios": ratios,
                                      "precision": policies, "config": vars(args) | {"json": str(args.json)},
                                      "environment": env})
    return 0


def main(argv=None) -> int:
    return cli.run("alexnet.benchmark", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
