"""The toolkit's shared core: what every package (alexnet, export, bench, slurm) uses.

Modules (none imports TensorFlow; only `onnxfile` imports onnx and onnxruntime):
  cli          one-line errors and exit codes, the argparse that reports bad input in one line,
               the console every command prints to
  files        atomic writes (temporary name, fsync of the file and its directory, rename)
  environment  the environment record written beside every output; usable-CPU counting
  constants    names and limits shared across packages (datasets, classes, image size, providers)
  idx          the IDX image format (Fashion-MNIST), read without TensorFlow
  runs         the run contract: `RunDir` names every artifact of a run; `TrainSummary` and
               `EpochRecord` are summary.json, typed and versioned
  kerasfile    loading Keras model files with their custom layers (modules from an allow-list)
  onnxfile     safe ONNX opening (external data must stay beside the model) and the one
               "write -> onnx.checker -> load in onnxruntime" helper
"""
