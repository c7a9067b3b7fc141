"""Train AlexNet, data-parallel with Horovod, in mixed precision.

    horovodrun -np 4 python -m alexnet.train                       # 4 ranks (GPUs or processes)
    horovodrun -np 2 -H localhost:2 --gloo python -m alexnet.train --dataset fashion_mnist \\
        --image-size 67 --train-samples 8000 --epochs 2            # ~1 minute on 2 CPU cores
    python -m alexnet.train --dataset cifar10 --data-dir ~/cifar   # one process
    python -m alexnet.train ... --resume                           # continue from OUTPUT_DIR/checkpoint.npz
    python -m slurm.launch --elastic -- python -m alexnet.train --elastic ...   # in SLURM: go on without a lost node

Outputs (rank 0 only) in --output-dir: model.keras, checkpoint.npz (each epoch, atomic),
summary.json (config, environment, per-epoch metrics, throughput, test accuracy),
progress.json (epoch, step, images so far; every --log-every steps), tensorboard/, samples.png.
Exit status: 0 done, 2 bad input (one line), 75 stopped by SIGUSR1/SIGTERM after writing a
checkpoint (run again with --resume). `--help` and bad flags answer without loading TensorFlow.
TensorFlow's native start-up lines (absl, oneDNN, CUDA) are kept off stderr, so an error is the
last line there (`toolkit.cli.quiet_native_stderr`); --verbose shows them.
Bad input includes an --output-dir that cannot be written or is another training's (alexnet.rundir:
OUTPUT_DIR/.writer.lock while a run writes there) and a resume that would skip or repeat images.
"""
from __future__ import annotations

import argparse
import os
import sys

# Before anything imports TensorFlow: keep its C++ info/warning chatter off the console.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from alexnet.config import ALLREDUCE_PATHS, OPTIMIZERS, TrainConfig  # noqa: E402
from toolkit import cli  # noqa: E402
from toolkit.constants import DATASETS, DEVICES, NORMS, PRECISIONS  # noqa: E402


def parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = cli.ArgumentParser(prog="alexnet.train", description=__doc__.split("\n\n")[0],
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", default=d.dataset, help=f"one of {', '.join(DATASETS)}")
    p.add_argument("--data-dir", default=None, help="local dataset directory (default: the dataset's usual place)")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="per rank")
    p.add_argument("--image-size", type=int, default=d.image_size, help="side of the square image the network sees")
    p.add_argument("--norm", default=d.norm, help=f"one of {', '.join(NORMS)} (batch: tutorial, lrn: 2012 paper)")
    p.add_argument("--precision", default=d.precision, help=f"one of {', '.join(PRECISIONS)}")
    p.add_argument("--device", default=d.device,
                   help=f"one of {', '.join(DEVICES)}; auto: GPUs when TensorFlow sees them (one per local rank), "
                        "else the CPU; a loaded NVIDIA driver with no GPU visible to TensorFlow is an error unless cpu")
    p.add_argument("--optimizer", default=d.optimizer, help=f"one of {', '.join(OPTIMIZERS)}")
    p.add_argument("--lr", type=float, default=d.lr, help="learning rate for one rank; scaled by the rank count")
    p.add_argument("--momentum", type=float, default=d.momentum, help="SGD momentum (the tutorial: 0)")
    p.add_argument("--lr-warmup-epochs", type=float, default=d.lr_warmup_epochs,
                   help="epochs of linear warm-up to the scaled rate (with more than one rank)")
    p.add_argument("--fp16-allreduce", action="store_true", help="compress gradients to float16 on the wire")
    p.add_argument("--allreduce", default=d.allreduce,
                   help=f"one of {', '.join(ALLREDUCE_PATHS)}; grouped: one all-reduce after the backward pass; "
                        "overlap: each gradient's all-reduce starts as soon as backprop produced it")
    p.add_argument("--train-samples", type=int, default=None,
                   help="use only the first N training images (synthetic: the epoch size)")
    p.add_argument("--validation-samples", type=int, default=d.validation_samples,
                   help="the first N training images become the validation set")
    p.add_argument("--test-samples", type=int, default=None, help="evaluate on the first N test images (default: all)")
    p.add_argument("--steps-per-epoch", type=int, default=None, help="cap the steps per epoch")
    p.add_argument("--output-dir", default=d.output_dir)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--resume", action="store_true",
                   help="continue from OUTPUT_DIR/checkpoint.npz if it exists (else start fresh)")
    p.add_argument("--host-preprocess", action="store_true",
                   help="standardise and resize on the host, as the tutorial does (slower; for comparison)")
    p.add_argument("--warmup-steps", type=int, default=d.warmup_steps, help="steps left out of throughput figures")
    p.add_argument("--log-every", type=int, default=d.log_every,
                   help="steps per throughput interval and between progress.json updates")
    # SUPPRESS: TrainConfig's default stands, and --help does not print "(default: True)" for a "no" flag.
    p.add_argument("--no-progress", dest="progress", action="store_false", default=argparse.SUPPRESS,
                   help="no progress bar (progress.json is still written)")
    p.add_argument("--elastic", action="store_true",
                   help="Horovod elastic: go on when a rank is lost, let hosts join (run under an elastic horovodrun, "
                   "e.g. python -m slurm.launch --elastic)")
    p.add_argument("--commit-every", type=int, default=d.commit_every,
                   help="elastic: steps between in-memory commits; a lost rank rolls the others back to the last one")
    p.add_argument("--log-samples", default=None, metavar="DIR",
                   help="each rank appends a digest of every image it trained, per kept step, to DIR/HOST-PID.jsonl")
    # SUPPRESS: not a TrainConfig field, so absent from the parsed options unless given.
    p.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                   help="show TensorFlow's native log lines on stderr")
    return p


def _main(argv) -> int:
    options = vars(parser().parse_args(argv))
    verbose = options.pop("verbose", False)
    cfg = TrainConfig(**options)
    if not verbose:
        cli.quiet_native_stderr()
    from alexnet import devices

    # Before Horovod pins a GPU per rank; imports TensorFlow only where an NVIDIA driver is loaded (or for cpu).
    devices.select(cfg.device)
    # Importing TensorFlow takes seconds: only after the arguments are known to be good.
    from alexnet import report, training
    from alexnet.preemption import Preempted

    try:
        summary = training.run(cfg, report.for_rank)
    except Preempted as exc:
        print(f"alexnet.train: {exc}; run again with --resume", file=sys.stderr)
        return cli.PREEMPTED_EXIT
    if summary is not None:  # rank 0 only
        report.print_summary(summary, cfg.output_dir)
    return 0


def main(argv=None) -> int:
    return cli.run("alexnet.train", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
