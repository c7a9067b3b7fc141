"""One rank of `bench allreduce`: Horovod all-reduces of TensorFlow tensors, timed; rank 0 writes the times.

horovodrun starts it (bench/allreduce.py builds the command), e.g.

    horovodrun -np 2 -H localhost:2 --gloo python -m bench.allreduce_worker \\
        --sizes 1024,1048576 --iterations 20 --warmup 5 --out rows.json

For each size: a float32 tensor of size/4 elements, every element rank + 1, is summed once and
checked against n(n+1)/2 on every rank (an exact float32 value), and the run stops if any
element is wrong; then `warmup` untimed all-reduces, then `iterations` timed ones, each after a
barrier (a one-element all-reduce) so that every rank starts together, as the OSU
micro-benchmarks do. Each rank's per-iteration seconds are gathered; rank 0 writes
{"np", "rows": [{"bytes", "count", "wrong", "times_s": [[per iteration] per rank]}]} to --out
(bench/results.py AllreduceRow turns them into time, algbw, busbw and latency).
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Sequence

from toolkit.files import write_json_atomic

BYTES_PER_ELEMENT = 4  # float32


def measure(hvd, tf, size: int, iterations: int, warmup: int) -> dict[str, Any]:
    count = size // BYTES_PER_ELEMENT
    world = hvd.size()  # Horovod:
    tensor = tf.fill([count], float(hvd.rank() + 1))  # Horovod: each rank's known contribution
    summed = hvd.allreduce(tensor, op=hvd.Sum, name=f"allreduce.check.{size}")  # Horovod:
    wrong = int(tf.math.count_nonzero(summed != world * (world + 1) / 2))
    # Horovod: every rank learns whether any rank saw a wrong element, so all stop together.
    wrong = int(hvd.allreduce(tf.constant([wrong], tf.int64), op=hvd.Sum, name=f"allreduce.wrong.{size}")[0])
    if wrong:
        return {"bytes": count * BYTES_PER_ELEMENT, "count": count, "wrong": wrong, "times_s": []}
    barrier = tf.zeros([1])
    seconds = []
    for i in range(warmup + iterations):
        hvd.allreduce(barrier, op=hvd.Sum, name="allreduce.barrier")  # Horovod: all ranks start together
        start = time.perf_counter()
        # Horovod: eager ops return done; reading one element makes sure the sum exists before the clock stops.
        hvd.allreduce(tensor, op=hvd.Sum, name=f"allreduce.{size}")[:1].numpy()
        if i >= warmup:
            seconds.append(time.perf_counter() - start)
    # Horovod: [1, iterations] from each rank -> [ranks, iterations], in rank order.
    gathered = hvd.allgather(tf.constant([seconds], tf.float64), name=f"allreduce.times.{size}")
    return {"bytes": count * BYTES_PER_ELEMENT, "count": count, "wrong": 0, "times_s": gathered.numpy().tolist()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.allreduce_worker", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", required=True, help="message sizes in bytes, comma-separated")
    parser.add_argument("--iterations", type=int, required=True)
    parser.add_argument("--warmup", type=int, required=True)
    parser.add_argument("--out", required=True, help="where rank 0 writes the rows (JSON)")
    args = parser.parse_args(argv)
    import horovod.tensorflow as hvd  # Horovod:
    import tensorflow as tf

    hvd.init()  # Horovod:
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        rows.append(measure(hvd, tf, size, args.iterations, args.warmup))
        if rows[-1]["wrong"]:
            break
    if hvd.rank() == 0:  # Horovod: one file for the run, from the rank that holds every rank's times
        write_json_atomic(args.out, {"np": hvd.size(), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
