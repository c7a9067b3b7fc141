"""`python -m export MODEL -o OUT.onnx` (console script: alexnet-export).

    python -m export runs/alexnet/model.keras -o runs/alexnet/alexnet.onnx
    python -m export model.keras -o alexnet.onnx --dataset fashion_mnist --variants float16,int8
    python -m export model.keras -o alexnet_nchw.onnx --nchw --no-preprocessing --opset 17
    python -m export model.keras -o alexnet.onnx --no-rewrite affine-into-gemm    # see export/rewrite.py

Writes OUT.onnx (and OUT.float16.onnx / OUT.int8.onnx) and OUT.onnx.json (config,
environment, every comparison). Exit status: 0 all checks passed, 1 a check failed
(outputs outside tolerance), 2 bad input.

Parsing and validating the options imports neither TensorFlow nor onnxruntime (export.job),
so --help and bad input are answered at once; the job itself (export.pipeline) imports them.
TensorFlow's native start-up lines (absl, oneDNN, CUDA) are kept out of stderr, so an error is
the last line there (`toolkit.cli.quiet_native_stderr`); --verbose shows them.
"""
from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from export import METHODS, REWRITES  # noqa: E402
from export.job import (  # noqa: E402
    DEFAULT_CALIBRATION_SAMPLES,
    DEFAULT_FLOAT16_TOLERANCE,
    DEFAULT_INT8_MIN_AGREEMENT,
    DEFAULT_SAMPLES,
    DEFAULT_TOLERANCE,
    ExportJob,
)
from toolkit import cli  # noqa: E402


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def parser() -> cli.ArgumentParser:
    p = cli.ArgumentParser(prog="alexnet-export", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="a Keras 3 model file (.keras), single input and single output")
    p.add_argument("-o", "--output", help="the ONNX file to write (default: MODEL with the suffix .onnx)")
    p.add_argument("--opset", type=int, help="ONNX opset (default: the newest tf2onnx and onnxruntime both support)")
    p.add_argument("--nchw", action="store_true", help="NCHW input (what GPU providers prefer); default NHWC")
    p.add_argument("--no-preprocessing", dest="preprocessing", action="store_false",
                   help="leave the model's leading preprocessing layers (standardise, grey->RGB, resize, "
                        "rescale) out of the graph: callers then feed their output")
    p.add_argument("--keep-precision", action="store_true",
                   help="keep a mixed-precision model's 16-bit compute (default: export float32 compute)")
    p.add_argument("--method", choices=METHODS, default="fast",
                   help="fast (default): weights kept out of tf2onnx; stock: plain tf2onnx from_function")
    p.add_argument("--class-names", type=_names, help="comma-separated, one per output "
                   "(default: from summary.json beside MODEL)")
    p.add_argument("--dataset", help="real images for verification and int8 calibration "
                   "(fashion_mnist, cifar10; default: from summary.json beside MODEL, else random inputs)")
    p.add_argument("--data-dir", help="local dataset directory (default: the dataset's usual place)")
    p.add_argument("--samples", type=int, default=DEFAULT_SAMPLES,
                   help="test images (or random inputs) to verify on (default: %(default)s)")
    p.add_argument("--calibration-samples", type=int, default=DEFAULT_CALIBRATION_SAMPLES,
                   help="train images to calibrate int8 on (default: %(default)s)")
    p.add_argument("--variants", type=_names,
                   help="comma-separated from float16,int8; 'none' for none (default: float16, and int8 "
                        "when a dataset is known)")
    p.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                   help="max |ONNX - Keras| of the float32 model's outputs (default: %(default)s)")
    p.add_argument("--float16-tolerance", type=float, default=DEFAULT_FLOAT16_TOLERANCE,
                   help="max |ONNX - Keras| of the float16 variant's outputs (default: %(default)s)")
    p.add_argument("--int8-min-agreement", type=float, default=DEFAULT_INT8_MIN_AGREEMENT,
                   help="min top-1 agreement of the int8 variant with the float32 model (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default: %(default)s)")
    p.add_argument("--rewrites", type=_names, help=f"exact graph rewrites to apply, comma-separated, or 'none' "
                   f"(default: all: {','.join(REWRITES)}; export/rewrite.py says what each does)")
    p.add_argument("--no-rewrite", type=_names, action="extend", default=[], metavar="NAME",
                   help="leave out this rewrite (repeatable, or comma-separated)")
    p.add_argument("--verbose", action="store_true", help="show TensorFlow's native log lines on stderr")
    return p


def _main(argv) -> int:
    args = vars(parser().parse_args(argv))
    verbose = args.pop("verbose")
    if args["variants"] == ["none"]:
        args["variants"] = []
    if args["variants"] is not None:
        args["variants"] = tuple(args["variants"])
    if args["rewrites"] is not None:
        args["rewrites"] = () if args["rewrites"] == ["none"] else tuple(args["rewrites"])
    args["no_rewrite"] = tuple(args["no_rewrite"])
    job = ExportJob(**args)
    if not verbose:
        cli.quiet_native_stderr()
    # TensorFlow and onnxruntime come with the pipeline: imported only for a valid job.
    from export.pipeline import run

    run(job)
    return 0


def main(argv=None) -> int:
    return cli.run("alexnet-export", _main, argv)
