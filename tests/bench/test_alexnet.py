"""The bench on our own model: a small (67 px) AlexNet exported by export/, its variants and its Keras source."""
import json

import pytest

from bench import results

FASHION = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"


@pytest.mark.slow
def test_sweep_on_exported_alexnet_with_real_images(bench, small_alexnet, tmp_path):
    out = tmp_path / "sweep.json"
    done = bench("sweep", "--model", small_alexnet, "--batch", "1,8", "--images", FASHION, "--json", out,
                 quick=True)
    assert done.returncode == 0, done.stderr
    doc = json.loads(out.read_text())
    results.load(out)
    assert [r["batch"] for r in doc["rows"]] == [1, 8]
    assert doc["model"]["inputs"][0]["dtype"] == "tensor(uint8)"


@pytest.mark.slow
def test_compare_onnxruntime_tensorflow_and_variants(bench, small_alexnet, tmp_path):
    import numpy as np

    from bench.inputs import read_idx_images
    from export.variants import to_float16, to_int8
    from toolkit.runs import variant_path
    to_float16(small_alexnet, variant_path(small_alexnet, "float16"))
    to_int8(small_alexnet, variant_path(small_alexnet, "int8"), read_idx_images(FASHION)[:32, :, :, np.newaxis])
    out = tmp_path / "compare.json"
    done = bench("compare", "--model", small_alexnet, "--batch", "1,4", "--json", out, quick=True, timeout=600)
    assert done.returncode == 0, done.stderr
    doc = json.loads(out.read_text())
    results.load(out)
    labels = ["onnxruntime float32", "onnxruntime float16", "onnxruntime int8", "tensorflow float32"]
    assert [r["label"] for r in doc["rows"]] == labels * 2
    assert [r["batch"] for r in doc["rows"]] == [1] * 4 + [4] * 4
    for row in doc["rows"]:
        tf_row = next(r for r in doc["rows"] if r["batch"] == row["batch"] and r["engine"] == "tensorflow")
        expected = row["throughput"]["samples_per_second"] / tf_row["throughput"]["samples_per_second"]
        assert row["ratio"] == pytest.approx(expected)
    assert doc["environment"]["tensorflow"]["version"]
