"""Keras 3 -> ONNX export: fast conversion, verification, float16/int8 variants.

    python -m export runs/alexnet/model.keras -o runs/alexnet/alexnet.onnx

Modules:
  convert   the one place that converts (`export_keras`)
  graph     ONNX graph surgery after tf2onnx (attach weights, fix Resize scales, names)
  verify    the one place that compares ONNX outputs with Keras (max |diff|, top-1 agreement)
  variants  float16 and int8 (static QDQ, per-channel, calibrated on real images)
  samples   verification/calibration inputs: real dataset images or random ones
  pipeline  the whole job: convert, verify, variants, table, OUTPUT.json
  report    rich progress display and the closing table
  cli       `python -m export` / `alexnet-export`
  benchmark `python -m export.benchmark`: stock tf2onnx vs the fast path, full AlexNet

Importing this package imports neither TensorFlow nor tf2onnx.
"""

# The conversion paths of export.convert: weights kept out of tf2onnx, or tf2onnx as documented.
METHODS = ("fast", "stock")
