"""Property tests (Hypothesis) over checkpoint metadata: whatever JSON a checkpoint's `meta` member
holds (any value, or a valid one with any part replaced or removed), reading the checkpoint and
restoring from it either works or is one UsageError line; never another exception, never a
half-restored model. And every valid loop state and dealing reads back as written.

    .venv/bin/pytest tests/alexnet/test_checkpoint_properties.py
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alexnet import checkpoint
from alexnet.checkpoint import LoopState
from alexnet.data import Dealing
from tests.alexnet.test_checkpoint import DEALING, MID_EPOCH, fake_model, meta_bytes, rewrite, saved, valid_meta
from toolkit.cli import UsageError

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=24)
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def read_or_refuse(path: Path) -> None:
    """The property: a model restored from `path`, or one UsageError line and the model untouched."""
    model, optimizer = fake_model()
    try:
        checkpoint.open_checkpoint(path).restore(model, optimizer)
    except UsageError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc), str(exc)
        assert (model.variables[0].value == 0).all()
        return
    assert (model.variables[0].value == 7).all()


def replaced(meta, path: list, value, delete: bool):
    """`meta` with the part at `path` (keys or indices, as far as they lead) replaced by `value` or removed."""
    if not path or not isinstance(meta, (dict, list)) or not meta:
        return value
    key = path[0] % len(meta) if isinstance(meta, list) else sorted(meta)[path[0] % len(meta)]
    copy = list(meta) if isinstance(meta, list) else dict(meta)
    if delete and len(path) == 1:
        del copy[key]
    else:
        copy[key] = replaced(meta[key], path[1:], value, delete)
    return copy


@PROPERTY
@given(meta=JSON)
def test_any_json_as_metadata_is_read_or_refused_in_one_line(tmp_path, meta):
    path = saved(tmp_path)
    rewrite(path, {"meta.npy": meta_bytes(meta)})
    read_or_refuse(path)


@PROPERTY
@given(path=st.lists(st.integers(0, 50), min_size=1, max_size=5), value=JSON, delete=st.booleans())
def test_a_valid_metadata_with_any_part_changed_is_read_or_refused_in_one_line(tmp_path, path, value, delete):
    file = saved(tmp_path)
    rewrite(file, {"meta.npy": meta_bytes(replaced(valid_meta(file), path, value, delete))})
    read_or_refuse(file)


COUNT = st.integers(0, 2**40)
STATES = st.builds(LoopState, epoch=COUNT, step=COUNT, images_seen=COUNT, position=COUNT,
                   sums=st.tuples(*[st.floats(allow_nan=False)] * 3),
                   segments=st.lists(st.tuples(COUNT, COUNT, st.integers(1, 64)), max_size=3).map(tuple))
DEALINGS = st.builds(Dealing, elastic=st.booleans(), ranks=st.integers(1, 4096), batch_size=st.integers(1, 4096),
                     seed=st.integers(-2**31, 2**31), images=st.integers(1, 2**31))


@PROPERTY
@given(state=STATES, dealing=DEALINGS)
def test_every_valid_state_and_dealing_reads_back_as_written(tmp_path, state, dealing):
    path = tmp_path / checkpoint.FILENAME
    checkpoint.save(path, *fake_model(7.0), state, dealing)
    back = checkpoint.open_checkpoint(path)
    assert (back.state, back.dealing) == (state, dealing)
    assert json.loads(json.dumps(checkpoint.read_meta(path)[0]))["state"]["epoch"] == state.epoch


def test_the_fixed_examples_hold_the_property(tmp_path):
    """The helpers above on hand-picked cases, so a broken helper cannot pass every draw."""
    path = saved(tmp_path)
    assert checkpoint.open_checkpoint(path).state == MID_EPOCH and checkpoint.open_checkpoint(path).dealing == DEALING
    meta = valid_meta(path)
    assert replaced(meta, [sorted(meta).index("state"), 0], "x", delete=True)["state"] != meta["state"]
    assert replaced([1, [2, 3]], [1, 0], 9, delete=False) == [1, [9, 3]]
    rewrite(path, {"meta.npy": meta_bytes(replaced(meta, [sorted(meta).index("format")], None, delete=True))})
    read_or_refuse(path)
    rewrite(path, {"meta.npy": meta_bytes(meta)})
    read_or_refuse(path)
    assert np.load(path)["model_0"].shape == (3, 3, 1, 4)
