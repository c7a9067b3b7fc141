"""`bench allreduce`: the row math against nccl-tests' and OSU's definitions by hand, the sum check, the
JSON and the report; and -np 2 for real under Horovod (Gloo, localhost)."""
import json
from pathlib import Path

import pytest

from bench import allreduce, report, results
from bench.allreduce import AllreduceConfig, parse_sizes
from bench.results import AllreduceRow, BenchResult
from toolkit.cli import CheckFailed, UsageError

DATA = Path(__file__).parent / "data"

# 4 ranks x 2 iterations (s). The slowest rank per iteration: 2 ms, then 4 ms -> time 3 ms.
TIMES_S = [[0.001, 0.004], [0.002, 0.001], [0.0015, 0.002], [0.001, 0.003]]


def test_time_algbw_busbw_by_hand():
    row = AllreduceRow.from_seconds(4, 3_000_000, 750_000, 0, TIMES_S)
    assert row.time_us == pytest.approx(3000.0)
    # nccl-tests PERFORMANCE.md: algbw = S / t = 3e6 B / 3e-3 s = 1e9 B/s = 1 GB/s;
    # all-reduce busbw = algbw x 2(n-1)/n = 1 x 6/4 = 1.5 GB/s.
    assert row.algbw_gb_s == pytest.approx(1.0)
    assert row.busbw_gb_s == pytest.approx(1.5)
    # osu_allreduce: each rank's mean (2.5, 1.5, 1.75, 2 ms), then avg, min, max over ranks.
    assert row.latency_us == pytest.approx({"avg": 1937.5, "min": 1500.0, "max": 2500.0})


def test_busbw_equals_algbw_at_two_ranks():
    row = AllreduceRow.from_seconds(2, 1024, 256, 0, [[1e-3], [2e-3]])
    assert row.busbw_gb_s == pytest.approx(row.algbw_gb_s) == pytest.approx(1024 / 2e-3 / 1e9)


def test_rows_need_as_many_times_on_every_rank():
    with pytest.raises(ValueError, match="as many times"):
        AllreduceRow.from_seconds(2, 1024, 256, 0, [[1e-3, 1e-3], [1e-3]])


def test_a_wrong_sum_stops_the_run():
    found = {"np": 2, "rows": [{"bytes": 1024, "count": 256, "wrong": 0, "times_s": [[1e-3], [1e-3]]},
                               {"bytes": 4096, "count": 1024, "wrong": 7, "times_s": []}]}
    with pytest.raises(CheckFailed, match="7 of 1024 elements of the 4096-byte sum were wrong"):
        allreduce.rows_from(found)
    found["rows"].pop()
    assert [r.bytes for r in allreduce.rows_from(found)] == [1024]


class _WrongHorovod:
    """Two ranks whose all-reduce forgets the other rank's part: the worker must see it before timing."""
    Sum = "sum"

    def size(self):
        return 2

    def rank(self):
        return 0

    def allreduce(self, tensor, op, name):
        return tensor


def test_worker_checks_the_sum_before_timing():
    tf = pytest.importorskip("tensorflow")
    from bench import allreduce_worker
    row = allreduce_worker.measure(_WrongHorovod(), tf, 64, iterations=3, warmup=1)
    # Rank 0 contributes 1 to each of 16 elements; the right sum is 1 + 2 = 3.
    assert row == {"bytes": 64, "count": 16, "wrong": 16, "times_s": []}


def test_sizes_as_nccl_tests_take_them():
    assert parse_sizes("1K..256M") == tuple(1024 * 4 ** i for i in range(10))
    assert parse_sizes("1K..8K", factor=2) == (1024, 2048, 4096, 8192)
    assert parse_sizes("64,1M,2G") == (64, 2 ** 20, 2 ** 31)


@pytest.mark.parametrize("kwargs, message", [
    ({"nps": (1, 2)}, "world sizes >= 2"), ({"nps": (2, 2)}, "distinct"), ({"sizes": (1024, 6)}, "multiples of 4"),
    ({"iterations": 0}, "--iterations"), ({"controller": "nccl"}, "gloo or mpi"),
])
def test_bad_options(kwargs, message):
    with pytest.raises(UsageError, match=message):
        AllreduceConfig(**kwargs)


def test_bad_size_names_the_fix():
    with pytest.raises(UsageError, match="e.g. 64K"):
        parse_sizes("1KB..lots")


def test_command_launches_the_worker_like_bench_train():
    command = AllreduceConfig(nps=(2,), sizes=(1024, 4096), controller="mpi").command(2, Path("o.json"),
                                                                                       ["node1", "node2"])
    assert command[:6] == ["horovodrun", "-np", "2", "-H", "node1:1,node2:1", "--mpi"]
    assert command[command.index("--sizes") + 1] == "1024,4096" and "bench.allreduce_worker" in command


def _result() -> BenchResult:
    rows = (AllreduceRow.from_seconds(4, 3_000_000, 750_000, 0, TIMES_S),
            AllreduceRow.from_seconds(4, 1024, 256, 0, TIMES_S))
    return BenchResult(kind="allreduce", config={"link": "1gbit"}, environment={}, allreduce=rows)


def test_json_round_trip_writes_the_derived_numbers():
    doc = json.loads(json.dumps(_result().to_json()))
    assert doc["allreduce"][0]["busbw_gb_s"] == pytest.approx(1.5)
    assert doc["allreduce"][0]["latency_us"]["max"] == pytest.approx(2500.0)
    assert BenchResult.from_json(doc).allreduce == _result().allreduce


def test_older_files_load_with_no_allreduce_rows():
    for path in DATA.glob("*.json"):
        assert results.load(path).allreduce == ()


def test_report_renders_the_rows_and_the_headline():
    result = _result()
    text = report.render_text([result], width=200)
    assert "busbw GB/s" in text and "3000000" in text
    page = report.to_html(report.document([result]))
    # The headline: the largest message's busbw, in GB/s and Gb/s, beside the shaped link's rate.
    assert "all-reduce -np 4" in page and "busbw 1.500 GB/s (12.00 Gb/s) at 3000000; link 1gbit" in page
    assert report.tables(result)[0].rows[1][:6] == ("4", "1K", "256", "3000.0", "0.000341", "0.000512")


@pytest.mark.slow
@pytest.mark.distributed
def test_allreduce_np_2_on_localhost(bench, tmp_path):
    out = tmp_path / "ar.json"
    done = bench("allreduce", "-np", "2", "--sizes", "1K,64K", "--iterations", 3, "--warmup", 1, "--json", out,
                 "--quiet", timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = results.load(out).allreduce
    assert [(r.np, r.bytes, r.count, r.wrong) for r in rows] == [(2, 1024, 256, 0), (2, 65536, 16384, 0)]
    assert all(len(r.times_us) == 2 and len(r.times_us[0]) == 3 and r.busbw_gb_s > 0 for r in rows)
    assert "Horovod's gloo collectives (horovodrun --gloo), float32 sums" in results.load(out).notes
    html = tmp_path / "ar.html"
    shown = bench("report", out, "--html", html)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "all-reduce -np 2" in html.read_text()
