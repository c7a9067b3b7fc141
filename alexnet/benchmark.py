"""Training images/s: the tutorial's way vs this toolkit's defaults, side by side in one run.

    python -m alexnet.benchmark                       # 227 px, batch 32, 40 timed steps, 3 rounds
    python -m alexnet.benchmark --rounds 1 --steps 20 --json runs/train-benchmark.json

  tutorial  host-side standardise + grey->RGB + resize to 227 in a plain `map` (no parallel
            calls, no prefetch), `model.fit`, float32, batch 32: the tutorial's pipeline.
  ours      `python -m alexnet.train` with its defaults (uint8 images shipped to the model,
            which preprocesses on the device; parallel tf.data with prefetch; precision auto).

Both train on real Fashion-MNIST, one process each, at the same image size and batch. Each
mode runs in its own process (TensorFlow keeps thread pools and caches per process), and
the modes alternate for --rounds rounds so a change in machine load hits both; the median
of the rounds is reported, with the ratio ours / tutorial.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from toolkit import cli, environment  # noqa: E402
from toolkit.files import require_parent_dir, write_json_atomic  # noqa: E402
from toolkit.runs import RunDir  # noqa: E402


def tutorial_worker(image_size: int, batch: int, warmup: int, steps: int) -> float:
    """The tutorial's training loop, timed per batch; returns images/s after warm-up."""
    import keras
    import tensorflow as tf

    from alexnet import data
    from alexnet.model import build_alexnet

    arrays = data.load_fashion_mnist()
    n = (warmup + steps) * batch
    x, y = arrays.x_train[5000:5000 + n], arrays.y_train[5000:5000 + n]

    def preprocess(image, label):
        image = tf.image.per_image_standardization(tf.cast(image, tf.float32))
        image = tf.repeat(image, 3, axis=-1)  # Fashion-MNIST is grey; the tutorial's CIFAR is RGB
        return tf.image.resize(image, (image_size, image_size)), label

    ds = (tf.data.Dataset.from_tensor_slices((x, y)).map(preprocess)
          .shuffle(len(x)).batch(batch, drop_remainder=True))
    keras.mixed_precision.set_global_policy("float32")
    model = build_alexnet(10, image_size)
    model.compile(loss="sparse_categorical_crossentropy", optimizer=keras.optimizers.SGD(0.001),
                  metrics=["accuracy"])
    stamps: list[float] = []
    timer = keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: stamps.append(time.perf_counter()))
    model.fit(ds, epochs=1, verbose=0, callbacks=[timer])
    return steps * batch / (stamps[-1] - stamps[warmup - 1])


def ours(image_size: int, batch: int, warmup: int, steps: int) -> tuple[float, str]:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "alexnet.train", "--dataset", "fashion_mnist", "--image-size", str(image_size),
               "--batch-size", str(batch), "--epochs", "1", "--train-samples", str((warmup + steps) * batch),
               "--validation-samples", str(batch), "--test-samples", str(batch), "--warmup-steps", str(warmup),
               "--log-every", str(steps), "--no-progress", "--output-dir", tmp]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode:
            raise cli.CheckFailed(f"training run failed: {result.stderr.strip().splitlines()[-1:]}")
        summary = RunDir(tmp).read_summary()
        return summary.images_per_second, summary.precision


def tutorial(image_size: int, batch: int, warmup: int, steps: int) -> float:
    cmd = [sys.executable, "-m", "alexnet.benchmark", "--worker", "--image-size", str(image_size),
           "--batch-size", str(batch), "--warmup", str(warmup), "--steps", str(steps)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode:
        raise cli.CheckFailed(f"tutorial run failed: {result.stderr.strip().splitlines()[-1:]}")
    return float(result.stdout.strip().splitlines()[-1])


def _main(argv) -> int:
    p = argparse.ArgumentParser(prog="alexnet.benchmark", description=__doc__.split("\n\n")[0])
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
            raise cli.UsageError(f"--{name.replace('_', '-')} must be at least 1")
    if args.worker:
        print(tutorial_worker(args.image_size, args.batch_size, args.warmup, args.steps))
        return 0
    if args.json:
        require_parent_dir(args.json)
    from rich.table import Table

    console = cli.console(stderr=True)
    rounds = {"tutorial": [], "ours": []}
    policy = None
    for i in range(args.rounds):
        sizes = (args.image_size, args.batch_size, args.warmup, args.steps)
        rounds["tutorial"].append(tutorial(*sizes))
        ips, policy = ours(*sizes)
        rounds["ours"].append(ips)
        console.print(f"round {i + 1}/{args.rounds}: tutorial {rounds['tutorial'][-1]:.1f} img/s, "
                      f"ours {ips:.1f} img/s ({policy})")
    med = {k: statistics.median(v) for k, v in rounds.items()}
    ratio = med["ours"] / med["tutorial"]
    env = environment.collect()
    table = Table(title=f"Training throughput, AlexNet {args.image_size} px, batch {args.batch_size}, 1 process")
    for col in ("way", "pipeline", "precision", "img/s (median)", "rounds"):
        table.add_column(col)
    table.add_row("tutorial", "host resize, map, model.fit", "float32", f"{med['tutorial']:.1f}",
                  ", ".join(f"{v:.1f}" for v in rounds["tutorial"]))
    table.add_row("ours", "uint8 in, resize in model, prefetch", policy, f"{med['ours']:.1f}",
                  ", ".join(f"{v:.1f}" for v in rounds["ours"]))
    console.print(table)
    console.print(f"ours / tutorial = [bold]{ratio:.2f}x[/] on {env['cpu']['model']} "
                  f"({env['cpu']['usable_cores']} cores), TensorFlow {env['packages'].get('tensorflow')}")
    if args.json:
        write_json_atomic(args.json, {"rounds": rounds, "median_images_per_second": med, "ratio": ratio,
                                      "ours_precision": policy, "config": vars(args) | {"json": str(args.json)},
                                      "environment": env})
    return 0


def main(argv=None) -> int:
    return cli.run("alexnet.benchmark", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
