"""Loading Keras 3 model files, custom layers included, without naming their package in code.

A `.keras` file records, for every custom layer, the module that defines it
(`"module": "alexnet.model"`). Keras only finds such a class once that module has been
imported, so a generic tool (bench's TensorFlow engine, the exporter) would otherwise have
to import every package whose models it may meet. `load_keras` imports the modules the
file names, but only from packages on an allow-list (this toolkit's own `alexnet`, plus any
the caller adds): a model file cannot make the loader import arbitrary code.

    from toolkit.kerasfile import load_keras
    model = load_keras("runs/alexnet/model.keras")

TensorFlow/Keras are imported inside the function: importing this module is cheap.
"""
from __future__ import annotations

import importlib
import json
import os
import zipfile
from pathlib import Path
from typing import Any, Iterator, Sequence

from toolkit.cli import UsageError

TRUSTED_PACKAGES = ("alexnet",)


def _modules(config: Any) -> Iterator[str]:
    """Modules of the custom objects (those with a `registered_name`) in a Keras config tree."""
    if isinstance(config, dict):
        if config.get("registered_name") and isinstance(config.get("module"), str):
            yield config["module"]
        for value in config.values():
            yield from _modules(value)
    elif isinstance(config, list):
        for value in config:
            yield from _modules(value)


def custom_modules(path: str | os.PathLike) -> list[str]:
    """The modules a .keras file says its custom layers come from (empty for other formats)."""
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return []  # not a .keras archive: Keras reports what it is below
    return sorted(set(_modules(config)))


def load_keras(path: str | os.PathLike, trusted: Sequence[str] = TRUSTED_PACKAGES):
    """Load a Keras 3 model file (ours or anyone's); bad input is a one-line UsageError."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"model file {path} does not exist: pass the .keras file a training run wrote")
    for module in custom_modules(path):
        if module.split(".")[0] in trusted:
            importlib.import_module(module)
    import keras

    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as exc:  # noqa: BLE001 - Keras raises ValueError, OSError, zipfile errors, ...
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise UsageError(f"{path} is not a loadable Keras model ({first_line}): "
                         f"pass a .keras (or .h5) file saved by Keras 3") from None
    if not isinstance(model, keras.Model):
        raise UsageError(f"{path} holds a {type(model).__name__}, not a Keras model: pass a saved keras.Model")
    return model
