"""onnxruntime benchmarks users can quote, with rich reports; `bench --help` is the manual.

Modules:
  results   dataclasses (Latency.from_values, Throughput.from_latency), JSON schema, loader
  inputs    inputs from the model's own signature (any rank/dtype, dynamic dims), random or real
  session   onnxruntime sessions: providers and honest fallback, threads, IO binding, TensorRT
  runner    the timing loop: warm-up excluded, minimum time and count, raw per-iteration times
  measure   the above combined; the harness-overhead check
  report    the one renderer: rich tables, Markdown/HTML/SVG/text, PNG plots, progress bar
  compare   onnxruntime vs TensorFlow, fp32 vs fp16 vs int8 (imports TensorFlow)
  train     Horovod training throughput and scaling (runs alexnet.train under horovodrun)
  cli       `bench` / `python -m bench`

Everything but `compare`'s TensorFlow side and `train` works without TensorFlow installed.
"""
