"""Everything Horovod, in one module: the rest of the toolkit never imports horovod.

The data-parallel story, step by step (each line of logic below is marked `# Horovod:`):
  1. `init()`: start Horovod; pin one GPU per local rank.
  2. `broadcast_variables()`: every rank starts from rank 0's weights and optimizer state.
  3. `average_gradients()`: one grouped all-reduce per step averages all gradients
     (optionally compressed to fp16 on the wire). Keras 3 variables have no `.ref()`, so
     `hvd.DistributedGradientTape` and `horovod.tensorflow.keras` fail; grouped_allreduce on
     plain gradient tensors works, mixed precision included.
  4. `average_variables()`: BatchNorm moving statistics are per rank; average them before
     evaluating or saving so the model reflects every shard.
  5. `sum_over_ranks()` / `any_rank()` / `gather_over_ranks()` / `gather_objects()`: metrics,
     stop decisions, and what each rank reports about itself (host, device, shard, weights).

Run with `horovodrun -np N -H localhost:N --gloo python -m alexnet.train`, or as one process
(Horovod then runs with a single rank).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import horovod.tensorflow as hvd
import numpy as np
import tensorflow as tf


@dataclass(frozen=True)
class World:
    rank: int
    size: int
    local_rank: int
    local_size: int
    device: str          # what this rank computes on: "CPU" or "GPU:<index>"
    allreduce: str       # how tensors cross ranks: "nccl", "mpi", "gloo" (or "none" for one rank)

    @property
    def is_chief(self) -> bool:
        """Only rank 0 prints, logs and writes files."""
        return self.rank == 0


def init() -> World:
    hvd.init()  # Horovod: join the job (Gloo rendezvous under horovodrun, a single rank otherwise)
    gpus = tf.config.list_physical_devices("GPU")
    device = "CPU"
    if gpus:
        index = hvd.local_rank() % len(gpus)  # Horovod: one GPU per local rank
        tf.config.experimental.set_memory_growth(gpus[index], True)
        tf.config.set_visible_devices(gpus[index], "GPU")
        device = f"GPU:{index}"
    else:
        # Horovod: ranks on one host share its cores; each TF defaulting to all of them
        # oversubscribes the CPU (measured: 2 ranks on 2 cores ran 2x slower per step).
        cores = len(os.sched_getaffinity(0))
        tf.config.threading.set_intra_op_parallelism_threads(max(1, cores // hvd.local_size()))
        tf.config.threading.set_inter_op_parallelism_threads(max(1, min(2, cores // hvd.local_size())))
    return World(hvd.rank(), hvd.size(), hvd.local_rank(), hvd.local_size(), device,
                 allreduce_backend(on_gpu=bool(gpus)))


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


def average_gradients(gradients, fp16_compression: bool = False):
    # Horovod: one fused all-reduce for all gradients; fp16 on the wire halves the traffic.
    compression = hvd.Compression.fp16 if fp16_compression else hvd.Compression.none
    return hvd.grouped_allreduce(list(gradients), op=hvd.Average, compression=compression)


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
