"""Everything Horovod, in one module: the rest of the toolkit never imports horovod.

The data-parallel story, step by step (each line of logic below is marked `# Horovod:`):
  1. `init()`: start Horovod; pin one GPU per local rank.
  2. `broadcast_variables()`: every rank starts from rank 0's weights and optimizer state.
  3. `average_gradients()`: averages all gradients (optionally compressed to fp16 on the wire).
     `grouped`: one grouped all-reduce once backprop has produced every gradient. `overlap`: one
     all-reduce per gradient, started as soon as that gradient exists, so the last layers' bytes
     travel while the first layers' gradients are still being computed. Keras 3 variables have no
     `.ref()`, so `hvd.DistributedGradientTape` and `horovod.tensorflow.keras` fail; all-reduces
     on plain gradient tensors work, mixed precision included.
  4. `average_variables()`: BatchNorm moving statistics are per rank; average them before
     evaluating or saving so the model reflects every shard.
  5. `sum_over_ranks()` / `any_rank()` / `gather_over_ranks()` / `gather_objects()`: metrics,
     stop decisions, and what each rank reports about itself (host, device, shard, weights).
  6. `ElasticState` / `elastic_run()` (`--elastic`): Horovod elastic, written for Keras 3
     (`hvd.elastic.TensorFlowKerasState` needs `.ref()` too). Every rank keeps a copy of the
     variables and the loop's position in host memory at each commit; when a rank is lost the
     others restore that copy, Horovod forms a new world from the hosts left (rank numbers and
     size change) and rank 0's state is broadcast again; a host that comes back joins at a commit.

Run with `horovodrun -np N -H localhost:N --gloo python -m alexnet.train`, or as one process
(Horovod then runs with a single rank). Elastic, with a script that prints the hosts as
`host:slots` lines (`python -m slurm.launch --elastic` writes one from the SLURM allocation):

    horovodrun -np 3 --min-np 1 --host-discovery-script ./discover-hosts.sh --gloo \
        python -m alexnet.train --elastic ...
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

import horovod.tensorflow as hvd
import numpy as np
import tensorflow as tf
from horovod.common import elastic as hvd_elastic
from horovod.common.exceptions import HorovodInternalError


@dataclass(frozen=True)
class World:
    rank: int
    size: int
    local_rank: int
    local_size: int
    device: str          # what this rank computes on: "CPU" or "GPU:<index> <name>", e.g. "GPU:0 NVIDIA H100 80GB HBM3"
    allreduce: str       # how tensors cross ranks: "nccl", "mpi", "gloo" (or "none" for one rank)

    @property
    def is_chief(self) -> bool:
        """Only rank 0 prints, logs and writes files."""
        return self.rank == 0


def init() -> World:
    hvd.init()  # Horovod: join the job (Gloo rendezvous under horovodrun, a single rank otherwise)
    gpus = tf.config.get_visible_devices("GPU")  # none under --device cpu (alexnet.devices hid them)
    device = "CPU"
    if gpus:
        index = hvd.local_rank() % len(gpus)  # Horovod: one GPU per local rank
        tf.config.experimental.set_memory_growth(gpus[index], True)
        tf.config.set_visible_devices(gpus[index], "GPU")
        name = tf.config.experimental.get_device_details(gpus[index]).get("device_name", "")
        device = f"GPU:{index} {name}".strip()
    else:
        # Horovod: ranks on one host share its cores; each TF defaulting to all of them
        # oversubscribes the CPU (measured: 2 ranks on 2 cores ran 2x slower per step).
        cores = len(os.sched_getaffinity(0))
        tf.config.threading.set_intra_op_parallelism_threads(max(1, cores // hvd.local_size()))
        tf.config.threading.set_inter_op_parallelism_threads(max(1, min(2, cores // hvd.local_size())))
    return current_world(device)


def current_world(device: str) -> World:
    """This rank's place in the job as Horovod has it now (an elastic reset changes rank and size).
    The device stays: TensorFlow cannot change its visible devices once it has started."""
    return World(hvd.rank(), hvd.size(), hvd.local_rank(), hvd.local_size(), device,  # Horovod:
                 allreduce_backend(on_gpu=device != "CPU"))


def allreduce_backend(on_gpu: bool) -> str:
    """Which library carries the all-reduce: NCCL for GPU tensors when built in, else MPI or Gloo."""
    if hvd.size() == 1:  # Horovod: one rank reduces nothing
        return "none"
    if on_gpu and hvd.nccl_built():  # Horovod: GPU tensors go through NCCL when it is compiled in
        return "nccl"
    return "mpi" if hvd.mpi_enabled() else "gloo"  # Horovod: the controller the job was launched with


def broadcast_variables(variables, root_rank: int = 0) -> None:
    # Horovod: start every rank from root's state; `.value` is the tf.Variable behind a Keras 3 variable.
    hvd.broadcast_variables([v.value for v in variables], root_rank=root_rank)


def average_gradients(gradients, fp16_compression: bool = False, overlap: bool = False):
    """The gradients' means over ranks, the same numbers either way: Horovod's Average is one sum
    per element over ranks, then a scaling, whatever tensors it was fused with."""
    # Horovod: fp16 on the wire halves the traffic.
    compression = hvd.Compression.fp16 if fp16_compression else hvd.Compression.none
    if not overlap:
        # Horovod: one fused all-reduce, which waits for the whole backward pass.
        return hvd.grouped_allreduce(list(gradients), op=hvd.Average, compression=compression)
    # Horovod: inside the traced step each all-reduce depends on its own gradient only, so
    # TensorFlow's executor hands it to Horovod as soon as backprop produced it (the last layer's
    # first) and goes on computing the earlier layers' gradients; Horovod's background thread
    # fuses those that arrive within one cycle (HOROVOD_CYCLE_TIME) into one buffer of up to
    # HOROVOD_FUSION_THRESHOLD bytes. Eagerly each call would wait: the step is a tf.function.
    return [hvd.allreduce(g, op=hvd.Average, compression=compression) for g in gradients]


def average_variables(variables) -> None:
    """Replace each variable by its mean over ranks (BatchNorm moving mean/variance)."""
    variables = list(variables)
    if hvd.size() == 1 or not variables:  # Horovod: one rank's statistics are already everyone's
        return
    averaged = hvd.grouped_allreduce([v.value for v in variables], op=hvd.Average)  # Horovod:
    for var, value in zip(variables, averaged):
        var.assign(value)


def sum_over_ranks(values: np.ndarray) -> np.ndarray:
    # Horovod: metrics are partial sums per rank; adding them gives exact global means.
    return hvd.allreduce(tf.constant(values, tf.float64), op=hvd.Sum).numpy()


def any_rank(flag: bool) -> bool:
    if hvd.size() == 1:  # Horovod: one rank decides alone; skip the all-reduce between every step
        return flag
    # Horovod: a signal may reach ranks at different steps; all must stop at the same one.
    return bool(hvd.allreduce(tf.constant(int(flag), tf.int32), op=hvd.Max).numpy())


def wait_for_all() -> None:
    """Return once every rank got here (e.g. after rank 0 renamed a checkpoint into place)."""
    any_rank(False)  # Horovod: an all-reduce is a barrier


def gather_over_ranks(values: np.ndarray) -> np.ndarray:
    """Stack one row per rank (rank order), e.g. shard fingerprints and weight checksums."""
    row = tf.constant(np.asarray(values, np.int64)[None])
    return hvd.allgather(row).numpy()  # Horovod:


def gather_objects(obj) -> list:
    """One small picklable object per rank, in rank order, on every rank."""
    return hvd.allgather_object(obj)  # Horovod:


def broadcast_object(obj, root_rank: int = 0):
    """A small picklable object (the resume position) from root to every rank."""
    return hvd.broadcast_object(obj, root_rank=root_rank)  # Horovod:


class ElasticState(hvd_elastic.State):  # Horovod: what elastic training commits, restores and syncs
    """Keras 3 variables (model and optimizer: weights, BatchNorm statistics, dropout RNG state,
    slots, iteration count, loss scale) and `position`, any picklable object saying where the
    loop is (epoch, step, data position).

    `commit()` (Horovod's: `save()`, then a collective that raises HostsUpdatedInterrupt on every
    rank at once when hosts were added or removed) copies them to host memory; `restore()` puts
    the last copy back after a failed collective; `sync()` gives every rank rank 0's, after a
    reset and at the start. `rolled_back` is the position a restore abandoned (None if none).
    """

    def __init__(self, variables, position: Any):
        self.variables = list(variables)
        self.position = position
        self.rolled_back: Any = None
        # Horovod: broadcast_object from rank 0 is how State agrees on host updates.
        super().__init__(bcast_object=broadcast_object, get_rank=hvd.rank)
        self.save()

    def save(self) -> None:
        self._saved = [np.array(v.numpy()) for v in self.variables], self.position

    def restore(self) -> None:
        values, position = self._saved
        for var, value in zip(self.variables, values):
            var.assign(value)
        self.rolled_back, self.position = self.position, position

    def sync(self) -> None:
        broadcast_variables(self.variables)  # Horovod: rank 0's variables everywhere (newcomers included)
        self.position = broadcast_object(self.position)  # Horovod:
        self.save()


def _reset() -> None:
    hvd.shutdown()  # Horovod: leave the broken world ...
    hvd.init()  # Horovod: ... and join the next: the driver assigns new ranks once every rank is back


def elastic_run(func: Callable[..., Any]) -> Callable[..., Any]:
    """`hvd.elastic.run` for this module's collectives: `func(state, ...)` is run again after every
    reset, from the restored (rank lost) or current (hosts changed) state, synced from rank 0.

    Horovod's own wrapper turns only errors naming HorovodAllreduce/Allgather/Broadcast into a
    reset; the gradients' HorovodGroupedAllreduce fails with other names, so any TensorFlow op
    error mentioning Horovod counts here: a collective failed because a rank went away."""
    def translated(state, *args, **kwargs):
        try:
            return func(state, *args, **kwargs)
        except tf.errors.OpError as exc:
            if "horovod" not in str(exc.message).lower():
                raise
            raise HorovodInternalError(exc) from exc  # Horovod: restore, reset, sync, run again
    return hvd_elastic.run_fn(translated, _reset)  # Horovod:
