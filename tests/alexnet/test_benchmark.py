"""`python -m alexnet.benchmark`: three ways side by side, and bad input refused in one line."""
import json

import pytest

from tests.conftest import run_module


@pytest.mark.parametrize("args,message", [
    (["--rounds", "0"], "--rounds must be at least 1, got 0"),
    (["--image-size", "60"], "--image-size 60 is too small for AlexNet's three max-pools: use at least 67"),
    (["--steps", "ten"], "argument --steps: invalid int value: 'ten'"),
    (["--json", "nowhere/b.json"], "output directory nowhere does not exist"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, args, message):
    result = run_module("alexnet.benchmark", *args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("alexnet.benchmark: error: ") and message in lines[0], lines
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_reports_the_three_ways_and_the_ratios_that_separate_the_gains(tmp_path, fashion_mnist_dir):
    out = tmp_path / "b.json"
    result = run_module("alexnet.benchmark", "--rounds", "1", "--warmup", "1", "--steps", "2",
                        "--image-size", "67", "--json", out)
    assert result.returncode == 0, result.stderr[-3000:]
    doc = json.loads(out.read_text())
    ways = ("tutorial", "ours_float32", "ours_auto")
    assert tuple(doc["rounds"]) == ways and all(len(doc["rounds"][w]) == 1 for w in ways)
    assert doc["precision"]["tutorial"] == doc["precision"]["ours_float32"] == "float32"
    medians, ratios = doc["median_images_per_second"], doc["ratios"]
    assert all(medians[w] > 0 for w in ways)
    assert ratios["pipeline"] == pytest.approx(medians["ours_float32"] / medians["tutorial"])
    assert ratios["precision"] == pytest.approx(medians["ours_auto"] / medians["ours_float32"])
    assert ratios["total"] == pytest.approx(ratios["pipeline"] * ratios["precision"])
    for label in ("tutorial", "ours float32", "ours auto", "pipeline", "precision", "total"):
        assert label in result.stderr
