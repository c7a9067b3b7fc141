"""onnxruntime benchmarks users can quote, with rich reports; `bench --help` is the manual.

Modules:
  results   dataclasses (Latency.from_values, Throughput.from_latency, Spread), JSON schema, loader
  inputs    inputs from the model's own signature (any rank/dtype, dynamic dims), random or real
  session   onnxruntime sessions: providers and honest fallback, threads, IO binding, TensorRT
  engines   one interface over onnxruntime (a session) and TensorFlow (a Keras file, one tf.function)
  runner    the timing loop: warm-up excluded, minimum time and count, raw per-iteration times
  resources peak resident memory, CPU utilisation, load and first-run time, GPU memory: read from the process
  measure   an engine + inputs + the timing loop -> rows; the harness-overhead check
  profile   where the time goes: onnxruntime's per-node profile, TensorFlow's per-op one (`bench profile`)
  tune      the best variant, threads, spinning, graph optimisation, execution mode, batch (`bench tune`)
  tuned     the settings file `bench tune` writes and `--config` reads (model sha256-checked)
  report    the one renderer: rich tables, the run report (Markdown, one self-contained HTML page),
            plot files, the progress bar
  figures   pure functions from results (and the training summary) to matplotlib figures
  compare   onnxruntime vs TensorFlow, fp32 vs fp16 vs int8, each engine in its own process
  stats     confidence intervals for correlated series (batch means, order statistics widened for dependence,
            Welch and paired t), verdicts, warnings
  calibration  every interval and verdict against known truth: coverage, false verdicts, power
  scenarios MLPerf LoadGen's scenarios, rules, early stopping, validity, peak search; LoadRow (pure)
  load      the load generator: single-/multi-stream loops, Poisson server with worker threads, offline
  check     verdicts from repeated runs or interleaved rounds, and the regression check `bench check`
  aa        the A/A benchmark: identical runs through `bench check`, counting false regressions
  train     Horovod training throughput and scaling (runs alexnet.train under horovodrun)
  cli       `bench` / `python -m bench`

onnxruntime and TensorFlow are imported only where a session or a Keras model is made:
`bench --help`, `bench SUBCOMMAND --help`, `bench report` and `bench check` load neither, and everything but
`compare`'s TensorFlow side and `train` works without TensorFlow installed.
"""
