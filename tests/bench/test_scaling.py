"""bench/scaling.py: the ring all-reduce scaling model, against cases computed by hand."""
from __future__ import annotations

import json
import math

import pytest

from bench import scaling
from bench.results import AllreduceRow, BenchResult
from bench.scaling import ScalingInputs, comm_seconds, predict
from toolkit.cli import UsageError

# forward 1 s, backward 2 s, 100 bytes over 10 bytes/s, 0.5 s a hop: round numbers to compute by hand.
SIMPLE = ScalingInputs(forward_s=1.0, backward_s=2.0, gradient_bytes=100.0, bandwidth_bytes_per_s=10.0, latency_s=0.5)


def test_ring_cost_by_hand():
    # np 2: 2(1)/2 x 100/10 = 10 s of bytes, 2 hops x 0.5 s = 1 s.
    assert comm_seconds(SIMPLE, 2) == pytest.approx(11.0)
    # np 4: 2(3)/4 x 10 = 15 s, 6 hops x 0.5 = 3 s.
    assert comm_seconds(SIMPLE, 4) == pytest.approx(18.0)
    # float16: half the bytes, the same hops.
    assert comm_seconds(SIMPLE, 4, fp16=True) == pytest.approx(7.5 + 3.0)
    assert comm_seconds(SIMPLE, 1) == 0.0


@pytest.mark.parametrize("overlap, fp16, step", [
    (False, False, 3 + 11),          # compute + comm
    (True, False, 3 + 11 - 2),       # the backward pass (2 s) hides 2 s of the 11
    (False, True, 3 + 6),            # comm 5 + 1
    (True, True, 3 + 6 - 2),
])
def test_step_and_efficiency_at_two_ranks(overlap, fp16, step):
    p = predict(SIMPLE, 2, overlap=overlap, fp16=fp16)
    assert p.step_s == pytest.approx(step)
    assert p.efficiency == pytest.approx(3 / step)


def test_overlap_hides_no_more_than_the_communication():
    inputs = ScalingInputs(forward_s=1.0, backward_s=10.0, gradient_bytes=10.0, bandwidth_bytes_per_s=10.0)
    p = predict(inputs, 2, overlap=True, fp16=False)
    assert (p.comm_s, p.hidden_s, p.efficiency) == (pytest.approx(1.0), pytest.approx(1.0), pytest.approx(1.0))
    assert predict(inputs, 1, overlap=False, fp16=False).efficiency == 1.0


def test_table_has_four_variants_per_world_size_and_efficiency_falls_with_n():
    rows = scaling.table(SIMPLE, (2, 4, 8))
    assert len(rows) == 12
    plain = [r.efficiency for r in rows if not r.overlap and not r.fp16]
    assert plain == sorted(plain, reverse=True) and plain[0] == pytest.approx(3 / 14)


def test_h100_inputs_follow_the_stated_assumption():
    inputs = scaling.h100_inputs(4 * scaling.ALEXNET_227_TRAINABLE)
    step = 256 * 6 * 1.13e9 / (989e12 * 0.4)
    assert inputs.forward_s + inputs.backward_s == pytest.approx(step)
    assert inputs.backward_s == pytest.approx(2 * inputs.forward_s)
    assert inputs.bandwidth_bytes_per_s == 50e9


@pytest.mark.parametrize("text, bits", [("1gbit", 1e9), ("400gbit", 400e9), ("100mbit", 1e8), ("1.5Mbit", 1.5e6)])
def test_parse_rate(text, bits):
    assert scaling.parse_rate(text) == bits


@pytest.mark.parametrize("text", ["1gb", "gbit", "0gbit", "-1gbit", ""])
def test_parse_rate_refuses_with_the_fix(text):
    with pytest.raises(UsageError, match="e.g. 1gbit"):
        scaling.parse_rate(text)


def test_inputs_are_validated():
    with pytest.raises(UsageError, match="backward_s"):
        ScalingInputs(forward_s=1.0, backward_s=0.0, gradient_bytes=1.0, bandwidth_bytes_per_s=1.0)
    with pytest.raises(UsageError, match="latency_s"):
        ScalingInputs(forward_s=1.0, backward_s=1.0, gradient_bytes=1.0, bandwidth_bytes_per_s=1.0, latency_s=math.nan)


def test_command_states_its_inputs(capsys):
    assert scaling.main(["-np", "2,8"]) == 0
    out = capsys.readouterr().out
    assert "assumed, not measured" in out and "gradients 233.3 MB" in out and "400 Gb/s" in out
    assert [line.split()[0] for line in out.splitlines()[-2:]] == ["2", "8"]
    assert scaling.main(["--forward-ms", "1"]) == 2


def test_gradient_count_is_the_models():
    pytest.importorskip("tensorflow")
    import numpy as np

    from alexnet.model import build_alexnet
    model = build_alexnet()
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == scaling.ALEXNET_227_TRAINABLE


def test_link_from_refuses_a_largest_message_that_was_not_timed(tmp_path):
    # A wrong sum is not timed, so that row has no bus bandwidth to take the link's rate from.
    rows = (AllreduceRow(np=2, bytes=4096, count=1024, wrong=3, times_us=()),
            AllreduceRow.from_seconds(2, 1024, 256, 0, [[1e-3], [1e-3]]))
    path = tmp_path / "allreduce.json"
    path.write_text(json.dumps(BenchResult(kind="allreduce", config={}, environment={}, allreduce=rows).to_json()))
    with pytest.raises(UsageError, match=r"largest message \(4096 bytes, -np 2\) has no timings"):
        scaling._link_from(str(path))
