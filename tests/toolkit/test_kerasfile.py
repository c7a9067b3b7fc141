"""Loading .keras files with custom layers: their modules are imported from the allow-list only."""
from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import pytest

from tests.conftest import ROOT, cli_env
from tests.toolkit.test_idx import traced
from toolkit.cli import UsageError
from toolkit.kerasfile import custom_modules, load_keras


def _keras_file(path, module: str) -> None:
    """A .keras archive whose one custom layer claims to come from `module`."""
    config = {"module": "keras", "class_name": "Sequential", "config": {"layers": [
        {"module": module, "class_name": "Custom", "registered_name": f"{module}>Custom", "config": {}}]}}
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", json.dumps(config))
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))


def test_the_modules_of_custom_layers_are_read_from_the_file(tmp_path):
    _keras_file(tmp_path / "m.keras", "alexnet.model")
    assert custom_modules(tmp_path / "m.keras") == ["alexnet.model"]
    (tmp_path / "not-a-zip.keras").write_text("junk")
    assert custom_modules(tmp_path / "not-a-zip.keras") == []


def test_a_module_outside_the_allow_list_is_never_imported(tmp_path, monkeypatch):
    marker = tmp_path / "imported"
    (tmp_path / "evil_layers.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    _keras_file(tmp_path / "m.keras", "evil_layers")
    with pytest.raises(UsageError, match="is not a loadable Keras model"):
        load_keras(tmp_path / "m.keras")
    assert not marker.exists()


def test_our_model_loads_in_a_process_that_never_imported_alexnet(tmp_path):
    """What bench's TensorFlow engine relies on: the file names alexnet.model and that is enough."""
    build = ("import keras; from alexnet.model import build_alexnet; "
             f"build_alexnet(image_size=67, input_shape=(28, 28, 1)).save({str(tmp_path / 'a.keras')!r})")
    assert subprocess.run([sys.executable, "-c", build], env=cli_env(), cwd=ROOT, timeout=300).returncode == 0
    load = ("import sys; from toolkit.kerasfile import load_keras; "
            f"m = load_keras({str(tmp_path / 'a.keras')!r}); print(m.layers[1].__class__.__module__)")
    done = subprocess.run([sys.executable, "-c", load], env=cli_env(), cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "alexnet.model"


def test_missing_file_is_one_line():
    with pytest.raises(UsageError, match="model file nowhere.keras does not exist"):
        load_keras("nowhere.keras")


def test_a_missing_module_under_an_allowed_package_is_one_line(tmp_path):
    _keras_file(tmp_path / "m.keras", "alexnet.no_such_module")
    with pytest.raises(UsageError, match="takes custom layers from module 'alexnet.no_such_module', which cannot be "
                                         "imported \\(No module named 'alexnet.no_such_module'\\): pass a model"):
        load_keras(tmp_path / "m.keras")


def test_a_config_that_unpacks_past_the_bound_is_refused_unread(tmp_path):
    """A config of 64 MiB of spaces is 64 kB zipped: it used to be unpacked whole (and again by Keras)."""
    path = tmp_path / "bomb.keras"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.json", "{" + " " * (64 << 20) + "}")
    assert path.stat().st_size < 1 << 20
    refused, peak = traced(lambda: pytest.raises(UsageError, load_keras, path))
    refused.match(r"holds a config.json of 67108866 bytes unpacked, more than the 16777216")
    assert peak < 4 << 20, f"{peak} bytes allocated"
