"""The training configuration: one typed dataclass, validated on construction."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from alexnet.data import TUTORIAL_VALIDATION_SIZE
from toolkit.cli import UsageError
from toolkit.constants import DATASETS, DEVICES, MIN_IMAGE_SIZE, NORMS, PRECISIONS
from toolkit.runs import RunDir

OPTIMIZERS = ("sgd", "adam")
ALLREDUCE_PATHS = ("grouped", "overlap")   # how gradients cross ranks (alexnet.distributed.average_gradients)


@dataclass(frozen=True)
class TrainConfig:
    """Defaults are the tutorial's (batch 32 per rank, 227 px, 50 epochs, SGD 0.001) except
    where noted; every one is a flag of `python -m alexnet.train`."""

    dataset: str = "fashion_mnist"
    data_dir: str | None = None
    epochs: int = 50
    batch_size: int = 32                 # per rank; the global batch is batch_size * ranks
    image_size: int = 227
    norm: str = "batch"
    precision: str = "auto"
    device: str = "auto"                 # auto: GPUs when TensorFlow sees them (alexnet.devices)
    optimizer: str = "sgd"
    lr: float = 0.001                    # for one rank; multiplied by the number of ranks
    momentum: float = 0.9                # the tutorial uses none; 0.9 converges in far fewer epochs
    lr_warmup_epochs: float = 1.0        # Goyal et al.: ramp up to lr * ranks (applies only with >1 rank)
    fp16_allreduce: bool = False
    allreduce: str = "overlap"           # each gradient as it is ready (measured faster); grouped: after backprop
    train_samples: int | None = None
    validation_samples: int = TUTORIAL_VALIDATION_SIZE
    test_samples: int | None = None      # evaluate on the first N test images (default: all)
    steps_per_epoch: int | None = None   # cap, for quick runs
    output_dir: str = "runs/alexnet"
    seed: int = 0
    resume: bool = False
    host_preprocess: bool = False        # the tutorial's host-side standardise + resize (for comparison)
    warmup_steps: int = 5                # steps left out of throughput figures (graph tracing, caches)
    log_every: int = 10                  # steps per throughput interval and per progress.json update
    progress: bool = True
    elastic: bool = False                # Horovod elastic: ranks may leave and join (alexnet.distributed)
    commit_every: int = 10               # elastic: steps between commits, what a lost rank can cost
    log_samples: str | None = None       # each rank logs what it trained there (alexnet.record.SampleLog)

    def __post_init__(self):
        def need(ok: bool, message: str):
            if not ok:
                raise UsageError(message)

        need(self.dataset in DATASETS, f"unknown dataset {self.dataset!r}: use one of {', '.join(DATASETS)}")
        need(self.epochs >= 1, f"--epochs must be at least 1, got {self.epochs}")
        need(self.batch_size >= 1, f"--batch-size must be at least 1, got {self.batch_size}")
        need(self.image_size >= MIN_IMAGE_SIZE,
             f"--image-size {self.image_size} is too small for AlexNet's three max-pools: "
             f"use at least {MIN_IMAGE_SIZE}")
        need(self.norm in NORMS, f"unknown --norm {self.norm!r}: use one of {', '.join(NORMS)}")
        need(self.precision in PRECISIONS,
             f"unknown --precision {self.precision!r}: use one of {', '.join(PRECISIONS)}")
        need(self.device in DEVICES, f"unknown --device {self.device!r}: use one of {', '.join(DEVICES)}")
        need(self.optimizer in OPTIMIZERS,
             f"unknown --optimizer {self.optimizer!r}: use one of {', '.join(OPTIMIZERS)}")
        need(self.allreduce in ALLREDUCE_PATHS,
             f"unknown --allreduce {self.allreduce!r}: use one of {', '.join(ALLREDUCE_PATHS)}")
        need(self.lr > 0, f"--lr must be positive, got {self.lr}")
        need(0 <= self.momentum < 1, f"--momentum must be in [0, 1), got {self.momentum}")
        need(self.lr_warmup_epochs >= 0, f"--lr-warmup-epochs must be >= 0, got {self.lr_warmup_epochs}")
        need(self.train_samples is None or self.train_samples >= 1,
             f"--train-samples must be at least 1, got {self.train_samples}")
        need(self.validation_samples >= 1, f"--validation-samples must be at least 1, got {self.validation_samples}")
        need(self.test_samples is None or self.test_samples >= 1,
             f"--test-samples must be at least 1, got {self.test_samples}")
        need(self.steps_per_epoch is None or self.steps_per_epoch >= 1,
             f"--steps-per-epoch must be at least 1, got {self.steps_per_epoch}")
        need(self.warmup_steps >= 0, f"--warmup-steps must be >= 0, got {self.warmup_steps}")
        need(self.log_every >= 1, f"--log-every must be at least 1, got {self.log_every}")
        need(self.dataset != "synthetic" or self.data_dir is None,
             "--data-dir makes no sense with --dataset synthetic: drop it")
        need(self.dataset != "synthetic" or self.train_samples is not None,
             "--dataset synthetic needs --train-samples N (the epoch size)")
        need(self.commit_every >= 1, f"--commit-every must be at least 1, got {self.commit_every}")
        # Its steps count batches of a fixed world; an elastic epoch is every image, whatever the world.
        need(not (self.elastic and self.steps_per_epoch),
             "--steps-per-epoch cannot shorten an elastic epoch (its steps change size with the world): "
             "use --train-samples instead")

    @property
    def run_dir(self) -> RunDir:
        return RunDir(self.output_dir)

    def to_dict(self) -> dict:
        return asdict(self)
