"""A/A benchmark: identical runs of one model through `bench check`, counting the false regressions.

Both sides of every pair are the same model, settings and machine, so every REGRESSION `bench check`
reports is a false one. Each pair is `--runs` runs a side, each `bench` run its own process, the sides
taking turns in mirrored order (A B B A ...) so that a machine that drifts weighs on both; then
`bench check B... --baseline A... --max-slowdown 10%`. Beside it, what the first run of each side alone
says (`bench check B1 --baseline A1`: its within-run interval, the only one a single run has) is counted
too: how often a verdict from one run a side would have cried wolf.

The model is one this project did not make: onnx's own ResNet-50 test model, shipped in the onnx wheel
(onnx/backend/test/data/light/light_resnet50.onnx, batch 1, 3x224x224). The server scenario runs at half
the throughput the first run measured, with a latency bound of 20 mean run times, unless --qps and
--latency-bound-ms are given. Results: DIR/aa.json (the summary), every run's and check's JSON beside it.

    python -m bench.aa --out runs/aa                       # 20 throughput pairs, 10 server pairs, 3 runs a side
    python -m bench.aa --out /tmp/aa --pairs 2 --server-pairs 1 --runs 2 --min-time 0.2 \\
        --model .venv/lib/python3.11/site-packages/onnx/backend/test/data/light/light_squeezenet.onnx
"""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from bench.check import parse_slowdown
from bench.stats import Comparison
from toolkit import cli
from toolkit.files import require_output_dir, write_json_atomic

PROG = "python -m bench.aa"
CHECK_FAILED = 1


def default_model() -> Path:
    import onnx

    return Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / "light_resnet50.onnx"


@dataclasses.dataclass(frozen=True)
class AAConfig:
    """One A/A benchmark: `pairs` throughput pairs and `server_pairs` server pairs of `runs` runs a side."""

    model: Path
    out: Path
    pairs: int = 20
    server_pairs: int = 10
    runs: int = 3
    min_time: float = 5.0
    max_slowdown: str = "10%"
    qps: float | None = None
    latency_bound_ms: float | None = None

    def __post_init__(self):
        if not self.model.is_file():
            raise cli.UsageError(f"--model {self.model} does not exist: give an ONNX file, or leave --model out for "
                                 "onnx's own light_resnet50.onnx")
        require_output_dir(self.out, "--out")
        if self.pairs < 1 or self.server_pairs < 0:
            raise cli.UsageError(f"--pairs {self.pairs} / --server-pairs {self.server_pairs}: give at least 1 "
                                 "throughput pair and 0 or more server pairs")
        if self.runs < 2:
            raise cli.UsageError(f"--runs {self.runs}: a verdict needs at least 2 runs a side, e.g. --runs 3")
        if not self.min_time > 0:
            raise cli.UsageError(f"--min-time {self.min_time:g} must be > 0 seconds, e.g. --min-time 5")
        parse_slowdown(self.max_slowdown)
        if (self.qps is None) != (self.latency_bound_ms is None):
            raise cli.UsageError("--qps and --latency-bound-ms go together: give both, or neither (derived from the "
                                 "first throughput run)")


def _bench(*args: Any) -> subprocess.CompletedProcess:
    """`bench ARGS` in its own process; exit 2 (refused) or worse stops the benchmark with bench's own line."""
    done = subprocess.run([sys.executable, "-m", "bench", *map(str, args)], capture_output=True, text=True)
    if done.returncode not in (0, CHECK_FAILED):
        raise cli.UsageError(f"bench {args[0]} failed (exit {done.returncode}): {done.stderr.strip()[-300:]}")
    return done


def _checked(config: AAConfig, news: Sequence[Path], bases: Sequence[Path], path: Path) -> Comparison:
    """`bench check NEWS --baseline BASES`; its one comparison (the model has one row or one load point)."""
    _bench("check", *news, "--baseline", *bases, "--max-slowdown", config.max_slowdown, "--json", path, "--quiet")
    (comparison,) = json.loads(path.read_text())["comparisons"]
    return Comparison.from_json(comparison)


def run_pair(config: AAConfig, name: str, measure: Sequence[Any], say: Callable[[str], None]) -> dict[str, Any]:
    """`runs` runs a side in mirrored order (A B, B A, A B, ...), then the check of all of them and of the first
    run a side alone. `measure`: the bench command and its options, less --json."""
    paths: dict[str, list[Path]] = {"A": [], "B": []}
    for index in range(config.runs):
        for side in ("A", "B") if index % 2 == 0 else ("B", "A"):
            path = config.out / f"{name}-{side}{index + 1}.json"
            say(f"{name}: side {side}, run {index + 1} of {config.runs}")
            _bench(*measure, "--json", path, "--quiet")
            paths[side].append(path)
    repeated = _checked(config, paths["B"], paths["A"], config.out / f"{name}-check.json")
    single = _checked(config, paths["B"][:1], paths["A"][:1], config.out / f"{name}-check-one-run.json")
    _, within = single.slowdown()
    allowed = parse_slowdown(config.max_slowdown)
    return {"name": name, "verdict": repeated.verdict, "regression": bool(repeated.regression),
            "ratio": repeated.ratio, "interval": None if repeated.interval is None else repeated.interval.to_json(),
            "one_run_ratio": single.ratio,
            "one_run_interval_over_allowance": within is not None and within.low is not None
            and within.low > 1 + allowed}


def _server_load(config: AAConfig, first_throughput: Path) -> tuple[float, float]:
    """(qps, bound ms): the given ones, or half the first throughput run's samples/s and 20 mean run times."""
    if config.qps is not None and config.latency_bound_ms is not None:
        return config.qps, config.latency_bound_ms
    rate = json.loads(first_throughput.read_text())["rows"][0]["throughput"]["samples_per_second"]
    return round(rate / 2, 3), round(20 * 1000 / rate, 3)


def summary(pairs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {"pairs": len(pairs), "false_regressions": sum(p["regression"] for p in pairs),
            "false_verdicts": sum(p["verdict"] in ("faster", "slower") for p in pairs),
            "one_run_over_allowance": sum(p["one_run_interval_over_allowance"] for p in pairs),
            "each": list(pairs)}


def run_aa(config: AAConfig, say: Callable[[str], None]) -> dict[str, Any]:
    """Every pair, throughput first; the summary that DIR/aa.json holds."""
    throughput = [run_pair(config, f"throughput-{i + 1}", ("throughput", "--model", config.model, "--min-time",
                                                            config.min_time), say) for i in range(config.pairs)]
    qps, bound = _server_load(config, config.out / "throughput-1-A1.json")
    server_command = ("load", "--model", config.model, "--scenario", "server", "--qps", qps, "--latency-bound-ms",
                      bound, "--min-duration", config.min_time)
    server = [run_pair(config, f"server-{i + 1}", server_command, say) for i in range(config.server_pairs)]
    return {"model": str(config.model), "runs_a_side": config.runs, "max_slowdown": config.max_slowdown,
            "min_time_s": config.min_time, "server_qps": qps, "server_latency_bound_ms": bound,
            "throughput": summary(throughput), "server": summary(server)}


def build_parser() -> cli.ArgumentParser:
    parser = cli.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="an existing directory for every run's JSON and aa.json")
    parser.add_argument("--model", help="ONNX model (default: onnx's own light_resnet50.onnx)")
    parser.add_argument("--pairs", type=int, default=20, help="throughput pairs")
    parser.add_argument("--server-pairs", type=int, default=10, help="server-scenario pairs")
    parser.add_argument("--runs", type=int, default=3, help="runs a side, each in its own process")
    parser.add_argument("--min-time", type=float, default=5.0, help="seconds each run measures for at least")
    parser.add_argument("--max-slowdown", default="10%", help="bench check's allowance")
    parser.add_argument("--qps", type=float, help="server QPS (default: half the first run's throughput)")
    parser.add_argument("--latency-bound-ms", type=float, help="server bound (default: 20 mean run times)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = AAConfig(model=Path(args.model) if args.model else default_model(), out=Path(args.out),
                      pairs=args.pairs, server_pairs=args.server_pairs, runs=args.runs, min_time=args.min_time,
                      max_slowdown=args.max_slowdown, qps=args.qps, latency_bound_ms=args.latency_bound_ms)
    result = run_aa(config, lambda line: print(line, file=sys.stderr, flush=True))
    write_json_atomic(config.out / "aa.json", result)
    for name in ("throughput", "server"):
        part = result[name]
        print(f"{name}: {part['false_regressions']} false REGRESSIONs and {part['false_verdicts']} false verdicts "
              f"in {part['pairs']} pairs of {config.runs} runs a side (--max-slowdown {config.max_slowdown}); one run "
              f"a side, the within-run interval was over the allowance in {part['one_run_over_allowance']}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(PROG, main))
