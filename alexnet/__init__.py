"""AlexNet in TensorFlow/Keras, trained data-parallel with Horovod in mixed precision.

Modules:
  train        `python -m alexnet.train`, run alone or under `horovodrun -np N`
  benchmark    `python -m alexnet.benchmark`: the tutorial's way vs ours at float32 and at auto
  config       the typed training configuration (every flag of alexnet.train)
  model        the pure model builder (no I/O, no Horovod, no precision policy)
  data         datasets by name and the tf.data input pipeline
  inputs       what one rank trains and evaluates on: splits, its shard, an epoch's batches
  precision    the mixed-precision policy: which one, and holding it (restored however a block ends)
  distributed  everything Horovod (the only module that imports it)
  preemption   SIGUSR1/SIGTERM -> one stop decision on every rank -> checkpoint, exit 75
  training     the loop: Learner (model, optimizer, steps, checkpoints) and Loop (epochs, steps)
  checkpoint   checkpoint.npz, which --resume continues from exactly
  record       throughput, what each rank held, summary.json
  report       rank 0's console, TensorBoard scalars and progress.json

Importing this package imports neither TensorFlow nor Horovod.
"""
