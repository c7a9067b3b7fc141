"""AlexNet in TensorFlow/Keras, trained data-parallel with Horovod in mixed precision.

Modules:
  model        the pure model builder (no I/O, no Horovod, no precision policy)
  data         datasets by name and the tf.data input pipeline
  precision    the mixed-precision policy choice
  distributed  everything Horovod (the only module that imports it)
  train        `python -m alexnet.train`, run alone or under `horovodrun -np N`
  cli, fsio, environment   shared by export/, bench/ and slurm/: one-line errors,
               atomic writes, the environment record written beside every output

Importing this package imports neither TensorFlow nor Horovod.
"""
