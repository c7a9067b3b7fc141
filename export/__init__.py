"""Keras 3 -> ONNX export: fast conversion, verification, float16/int8 variants.

    python -m export runs/alexnet/model.keras -o runs/alexnet/alexnet.onnx

Modules:
  convert     `export_keras`, the one entry point that exports a model to a file; sequences:
    opsets      which opset: the newest tf2onnx and onnxruntime both support, probed at run time
    source      what is converted: the Keras model loaded, float32 compute, with or without preprocessing
    conversion  how: tf2onnx with the weights kept out of the conversion (fast), or stock
    writing     the file: metadata, written once through toolkit.onnxfile.write_checked
  graph       ONNX graph surgery after tf2onnx (attach weights, fix Resize scales, names)
  rewrite     exact graph rewrites after conversion (BatchNorm, affines folded, constants), each switchable
  verify      the one place that compares ONNX outputs with Keras (max |diff|, top-1 agreement);
              `FileCheck`, run on each file before it is renamed into place
  variants    float16 and int8 (static QDQ, per-channel, calibrated on real images)
  samples     verification/calibration inputs: real dataset images or random ones
  job         the options of `python -m export`, validated without TensorFlow or onnxruntime
  pipeline    the whole job: convert, verify, variants, table, OUTPUT.json
  report      rich progress display and the closing table
  cli         `python -m export` / `alexnet-export`
  benchmark   `python -m export.benchmark`: stock tf2onnx vs the fast path, full AlexNet

Importing this package imports neither TensorFlow nor tf2onnx.
"""

# The conversion paths of export.conversion: weights kept out of tf2onnx, or tf2onnx as documented.
METHODS = ("fast", "stock")

# The passes of export.rewrite, in the order they run (here, so that validating a job's options needs
# neither onnx nor numpy). `python -m export --rewrites a,b` / `--no-rewrite NAME` choose among them.
REWRITES = ("constant-folding", "repeat-into-conv", "resize-as-matmul", "batchnorm", "affine-past-maxpool",
            "affine-into-gemm", "affine-into-conv", "batchnorm-as-conv")
