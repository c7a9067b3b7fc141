"""A scaling model of data-parallel training: the efficiency at N ranks from a step's compute and a link.

    python -m bench.scaling                                  # 8 x H100 per node at 400 Gb/s (inputs printed)
    python -m bench.scaling --forward-ms 12 --backward-ms 25 --link 1gbit --latency-us 50 -np 2,3
    python -m bench.scaling --gradient-bytes 233311256 --link-from allreduce.json   # busbw `bench allreduce` measured

A pure function of its inputs, nothing measured here. A step at N ranks is the per-rank compute
(forward + backward) plus a ring all-reduce of the gradients, which moves 2(N-1)/N x bytes through
each rank's link and takes 2(N-1) latency-bound hops (Patarasuk & Yuan 2009; nccl-tests'
PERFORMANCE.md "bus bandwidth" is the same factor):

    comm(N)       = 2(N-1)/N x bytes / bandwidth + 2(N-1) x latency
    step(N)       = forward + backward + comm(N)                      no overlap (grouped all-reduce after backward)
    step(N)       = forward + backward + comm(N) - min(comm(N), backward)   overlap: at most the backward pass hides it
    efficiency(N) = step(1) / step(N), step(1) = forward + backward (one rank communicates nothing)

float16 compression halves the bytes (Horovod's `Compression.fp16`); its casts are not modelled.
The model assumes one rank per link, so the slowest link carries every rank's share: ranks that
share a node over a faster interconnect (NVLink) do better than this predicts.
"""
from __future__ import annotations

import dataclasses
import re
import sys
from typing import Sequence

from toolkit import cli

# Trainable parameters of alexnet.model.build_alexnet() at 227 px, 10 classes, BatchNorm: the floats all-reduced
# every step (the moving statistics are not gradients). tests/bench/test_scaling.py counts them from the model.
ALEXNET_227_TRAINABLE = 58_325_066
WORLD_SIZES = (2, 4, 8, 16, 32, 64, 128, 256, 512)
RATE_UNITS = {"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "tbit": 1e12}


def parse_rate(text: str) -> float:
    """A link rate as tc writes it (`1gbit`, `400gbit`, `100mbit`) -> bits per second."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-z]*)\s*", text.lower())
    if not match or match.group(2) not in RATE_UNITS or float(match.group(1)) <= 0:
        raise cli.UsageError(f"link rate {text!r}: give a positive number with a unit of "
                             f"{', '.join(RATE_UNITS)}, e.g. 1gbit or 400gbit")
    return float(match.group(1)) * RATE_UNITS[match.group(2)]


@dataclasses.dataclass(frozen=True)
class ScalingInputs:
    forward_s: float
    backward_s: float
    gradient_bytes: float
    bandwidth_bytes_per_s: float   # each rank's link, one direction
    latency_s: float = 0.0         # one hop of the ring

    def __post_init__(self):
        for name in ("forward_s", "backward_s", "gradient_bytes", "bandwidth_bytes_per_s"):
            if not getattr(self, name) > 0:
                raise cli.UsageError(f"{name} {getattr(self, name)!r} must be > 0: give a measured or stated value")
        if not self.latency_s >= 0:
            raise cli.UsageError(f"latency_s {self.latency_s!r} must be >= 0")


@dataclasses.dataclass(frozen=True)
class Prediction:
    np: int
    overlap: bool
    fp16: bool
    comm_s: float
    hidden_s: float
    step_s: float
    efficiency: float


def comm_seconds(inputs: ScalingInputs, np: int, fp16: bool = False) -> float:
    """Ring all-reduce of the gradients at `np` ranks; float16 compression moves half the bytes."""
    size = inputs.gradient_bytes / (2 if fp16 else 1)
    return 2 * (np - 1) / np * size / inputs.bandwidth_bytes_per_s + 2 * (np - 1) * inputs.latency_s


def predict(inputs: ScalingInputs, np: int, overlap: bool, fp16: bool) -> Prediction:
    if np < 1:
        raise cli.UsageError(f"-np {np}: world sizes are >= 1")
    compute = inputs.forward_s + inputs.backward_s
    comm = comm_seconds(inputs, np, fp16)
    # Gradients exist only once the backward pass makes them: overlap hides at most its length.
    hidden = min(comm, inputs.backward_s) if overlap else 0.0
    step = compute + comm - hidden
    return Prediction(np=np, overlap=overlap, fp16=fp16, comm_s=comm, hidden_s=hidden, step_s=step,
                      efficiency=compute / step)


def table(inputs: ScalingInputs, nps: Sequence[int] = WORLD_SIZES) -> list[Prediction]:
    """Every world size under the four variants: plain, overlap, fp16, overlap + fp16."""
    return [predict(inputs, np, overlap, fp16) for np in nps for fp16 in (False, True) for overlap in (False, True)]


# The stated assumption behind the H100 prediction (not a measurement; see H100_SOURCE).
H100_BATCH = 256
H100_TRAIN_FLOP_PER_IMAGE = 3 * 2 * 1.13e9   # forward multiply-adds of the 227 px model x 2 FLOP, x 3 with backward
H100_PEAK_FLOP_S = 989e12                     # dense BF16 tensor-core peak, H100 SXM
H100_UTILISATION = 0.4
H100_SOURCE = ("assumed, not measured: 2 x 1.13 G multiply-adds a 227 px image forward (counted from the "
               "model's conv and dense layers), x3 for forward + backward, at 40% of the H100 SXM's 989 TFLOP/s "
               "dense BF16 peak (NVIDIA H100 datasheet); backward = 2/3 of the step")


def h100_inputs(gradient_bytes: float, rate_bits: float = 400e9, latency_s: float = 5e-6) -> ScalingInputs:
    step = H100_BATCH * H100_TRAIN_FLOP_PER_IMAGE / (H100_PEAK_FLOP_S * H100_UTILISATION)
    return ScalingInputs(forward_s=step / 3, backward_s=2 * step / 3, gradient_bytes=gradient_bytes,
                         bandwidth_bytes_per_s=rate_bits / 8, latency_s=latency_s)


def render(inputs: ScalingInputs, predictions: Sequence[Prediction]) -> str:
    lines = [f"inputs: forward {inputs.forward_s * 1e3:.3f} ms, backward {inputs.backward_s * 1e3:.3f} ms, "
             f"gradients {inputs.gradient_bytes / 1e6:.1f} MB, link {inputs.bandwidth_bytes_per_s * 8 / 1e9:.3g} Gb/s "
             f"({inputs.bandwidth_bytes_per_s / 1e9:.3g} GB/s) one way, latency {inputs.latency_s * 1e6:g} us a hop",
             f"{'np':>5} {'comm ms':>9} {'eff':>7} {'overlap':>8} {'fp16':>7} {'both':>7}"]
    by_np: dict[int, dict[tuple[bool, bool], Prediction]] = {}
    for p in predictions:
        by_np.setdefault(p.np, {})[(p.overlap, p.fp16)] = p
    for np, cells in by_np.items():
        effs = [f"{cells[key].efficiency:7.1%}" for key in ((False, False), (True, False), (False, True), (True, True))]
        lines.append(f"{np:>5} {cells[(False, False)].comm_s * 1e3:9.3f} {effs[0]} {effs[1]:>8} {effs[2]} {effs[3]}")
    return "\n".join(lines)


def _link_from(path: str) -> float:
    """The bus bandwidth (bytes/s) of the largest message in a `bench allreduce --json` result."""
    from bench import results
    rows = results.load(path).allreduce
    if not rows:
        raise cli.UsageError(f"--link-from {path} holds no all-reduce rows: pass a `bench allreduce --json` file")
    largest = max(rows, key=lambda r: (r.bytes, r.np))
    if largest.busbw_gb_s is None:
        raise cli.UsageError(f"--link-from {path}: its largest message ({largest.bytes} bytes, -np {largest.np}) "
                             "has no timings (a wrong sum is not timed): measure it again with `bench allreduce`")
    return largest.busbw_gb_s * 1e9


def _main(argv: Sequence[str] | None) -> int:
    parser = cli.ArgumentParser(prog="python -m bench.scaling", description=__doc__.split("\n\n")[0])
    parser.add_argument("--forward-ms", type=float, help="a step's forward pass per rank (default: the H100 "
                                                        "assumption)")
    parser.add_argument("--backward-ms", type=float, help="a step's backward pass per rank")
    parser.add_argument("--gradient-bytes", type=float, default=4 * ALEXNET_227_TRAINABLE,
                        help="bytes all-reduced a step (default: AlexNet 227 px, float32)")
    parser.add_argument("--link", default="400gbit", help="each rank's link rate, tc-style (default 400gbit)")
    parser.add_argument("--link-from", metavar="ALLREDUCE.json", help="use the bus bandwidth `bench allreduce` "
                                                                      "measured at its largest message instead")
    parser.add_argument("--latency-us", type=float, default=5.0, help="one ring hop (default 5)")
    parser.add_argument("-np", dest="nps", default=",".join(map(str, WORLD_SIZES)), help="world sizes")
    args = parser.parse_args(argv)
    rate = _link_from(args.link_from) * 8 if args.link_from else parse_rate(args.link)
    if (args.forward_ms is None) != (args.backward_ms is None):
        raise cli.UsageError("give both --forward-ms and --backward-ms, or neither (the H100 assumption)")
    if args.forward_ms is None:
        inputs = h100_inputs(args.gradient_bytes, rate, args.latency_us * 1e-6)
        print(f"compute: {H100_SOURCE}; batch {H100_BATCH} per rank")
    else:
        inputs = ScalingInputs(args.forward_ms / 1e3, args.backward_ms / 1e3, args.gradient_bytes, rate / 8,
                               args.latency_us * 1e-6)
    try:
        nps = tuple(int(n) for n in args.nps.split(","))
    except ValueError:
        raise cli.UsageError(f"-np {args.nps}: give world sizes, comma-separated, e.g. -np 2,4,8") from None
    print(render(inputs, table(inputs, nps)))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run("bench.scaling", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
