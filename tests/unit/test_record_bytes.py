"""``record_bytes`` writes what ``json.dumps(record, indent=2, allow_nan=False)`` writes: the same
JSON values, the same errors, the same escapes; with orjson, only a float's spelling may differ."""

from __future__ import annotations

import datetime
import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmark.records import record_bytes as module
from benchmark.records.record_bytes import record_bytes
from tests.unit.test_results import make

_SCALARS = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=8)
            | st.floats(allow_nan=True, allow_infinity=True))
_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=20)


def _reference(value: object) -> bytes:
    return json.dumps(value, indent=2, allow_nan=False).encode("utf-8")


@given(st.dictionaries(st.text(max_size=6), _VALUES, max_size=6))
def test_the_same_json_values_or_the_same_error_as_json(record):
    try:
        expected = _reference(record)
    except ValueError:
        with pytest.raises(ValueError, match="Out of range float"):
            record_bytes(record)
        return
    written = record_bytes(record)
    assert written.isascii()
    assert json.loads(written) == json.loads(expected)


@given(st.dictionaries(st.text(max_size=6), st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=8)
    | st.floats(min_value=1e-3, max_value=1e6) | st.floats(min_value=-1e6, max_value=-1e-3),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20), max_size=6))
def test_byte_identical_where_floats_need_no_exponent(record):
    assert record_bytes(record) == _reference(record)


def test_a_record_is_byte_identical_and_uses_orjson(monkeypatch):
    record = make()
    assert record_bytes(record) == _reference(record)
    calls = []
    real = module.orjson.dumps
    monkeypatch.setattr(module.orjson, "dumps", lambda *a, **k: calls.append(1) or real(*a, **k))
    record_bytes(record)
    assert calls == [1]


@pytest.mark.parametrize("value", [datetime.datetime(2026, 1, 1), b"bytes", {"x"}])
def test_what_json_refuses_is_refused(value):
    record = {**make(), "extra": value}  # orjson would write a datetime: json refuses it
    with pytest.raises(TypeError):
        _reference(record)
    with pytest.raises(TypeError):
        record_bytes(record)


def test_int_keys_non_ascii_and_huge_ints_go_through_json_and_nan_is_refused():
    for record in ({"k": {1: "a"}}, {"k": "café ✓"}, {"k": 2**80}, {"k": [1.5, "x"], "n": None}):
        assert record_bytes(record) == _reference(record)
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match="Out of range float"):
            record_bytes({"x": {"y": [bad]}})


def test_without_orjson_it_is_json(monkeypatch):
    monkeypatch.setattr(module, "orjson", None)
    record = {"a": 1e-7, "b": [0.5]}
    assert record_bytes(record) == _reference(record)
