"""What the training run that wrote a model file says about it: summary.json beside model.keras.

Lets `python -m export runs/alexnet/model.keras` find the dataset (for real verification
and calibration images) and the class names (for the ONNX metadata) without flags.
Imports no TensorFlow.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from alexnet.data import CLASS_NAMES, DATASETS

REAL_DATASETS = tuple(d for d in DATASETS if d != "synthetic")


def _dataset(model_path: str | os.PathLike) -> str | None:
    try:
        dataset = json.loads(Path(model_path).with_name("summary.json").read_text())["config"]["dataset"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return dataset if isinstance(dataset, str) else None


def dataset_beside(model_path: str | os.PathLike) -> str | None:
    """The real dataset the run trained on, if a summary.json beside the model names one."""
    dataset = _dataset(model_path)
    return dataset if dataset in REAL_DATASETS else None


def class_names_beside(model_path: str | os.PathLike) -> list[str] | None:
    """The class names of the run's dataset, if a summary.json beside the model names a known one."""
    dataset = _dataset(model_path)
    return list(CLASS_NAMES[dataset]) if dataset in CLASS_NAMES else None
