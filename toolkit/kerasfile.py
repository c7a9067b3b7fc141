"""Loading Keras 3 model files, custom layers included, without naming their package in code.

A `.keras` file records, for every custom layer, the module that defines it
(`"module": "alexnet.model"`). Keras only finds such a class once that module has been
imported, so a generic tool (bench's TensorFlow engine, the exporter) would otherwise have
to import every package whose models it may meet. `load_keras` imports the modules the
file names, but only from packages on an allow-list (this toolkit's own `alexnet`, plus any
the caller adds): a model file cannot make the loader import arbitrary code.

    from toolkit.kerasfile import load_keras
    model = load_keras("runs/alexnet/model.keras")

Keras reads a file's config.json whole into memory: a config over MAX_CONFIG_BYTES (as the
archive declares it, checked before anything is unpacked) is refused, so a small zip whose
config unpacks to a gigabyte is never unpacked.

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
# AlexNet's config.json is about 10 kB; 16 MiB leaves room for far larger models.
MAX_CONFIG_BYTES = 16 << 20


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


def _config(path: str | os.PathLike) -> bytes | None:
    """config.json of a .keras archive, read only after its size is checked; None for other formats."""
    try:
        with zipfile.ZipFile(path) as archive:
            size = archive.getinfo("config.json").file_size
            if size > MAX_CONFIG_BYTES:
                raise UsageError(f"{path} holds a config.json of {size} bytes unpacked, more than the "
                                 f"{MAX_CONFIG_BYTES} a Keras model file may have here: pass a model Keras saved")
            with archive.open("config.json") as config:
                return config.read(MAX_CONFIG_BYTES)  # zipfile stops at the declared size
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        return None  # not a .keras archive: Keras reports what it is


def custom_modules(path: str | os.PathLike) -> list[str]:
    """The modules a .keras file says its custom layers come from (empty for other formats)."""
    text = _config(path)
    try:
        return sorted(set(_modules(json.loads(text)))) if text is not None else []
    except (ValueError, RecursionError):
        return []  # not JSON (or nested past Python's limits): Keras reports it


def load_keras(path: str | os.PathLike, trusted: Sequence[str] = TRUSTED_PACKAGES):
    """Load a Keras 3 model file (ours or anyone's); bad input is a one-line UsageError."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"model file {path} does not exist: pass the .keras file a training run wrote")
    for module in custom_modules(path):
        if module.split(".")[0] in trusted:
            try:
                importlib.import_module(module)
            except (ImportError, ValueError) as exc:
                raise UsageError(f"{path} takes custom layers from module {module!r}, which cannot be imported "
                                 f"({exc}): pass a model saved by this version of the toolkit") from None
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
