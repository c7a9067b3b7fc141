"""Keras 3 -> ONNX export: fast conversion, verification, float16/int8 variants.

    python -m export runs/alexnet/model.keras -o runs/alexnet/alexnet.onnx

Modules:
  onnxfile  safe loading of ONNX files (external data must stay beside the model);
            imports no TensorFlow, for bench/ on GPU machines
  graph     ONNX graph surgery after tf2onnx (attach weights, fix Resize scales, names)
  convert   the one place that converts (`export_keras`)

Importing this package imports neither TensorFlow nor tf2onnx.
"""
