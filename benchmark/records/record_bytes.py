"""A record's file contents: ``json.dumps(record, indent=2, allow_nan=False)``, made by orjson
where it is installed (the ``queue`` extra; ~10 us where json takes ~70, on every record a worker
writes).

orjson is used only where it writes the same JSON values: a record of JSON's own types (dict with
str keys, list, tuple, str, int, bool, None, finite float) whose output is ASCII. Anything else
(NaN or infinity, which json refuses and orjson would write as null; a datetime or numpy value,
which json refuses and orjson would convert; non-ASCII text, which json escapes) goes through
json, so an error or an escape is the same as before. The bytes may differ only in how a float is
spelled (orjson writes ``1e-7`` and ``0.00005``, json ``1e-07`` and ``5e-05``): the same number
to every JSON reader.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

try:
    import orjson
except ImportError:  # a core install without the queue extra: json alone
    orjson = None

_isfinite = math.isfinite


def record_bytes(record: Mapping[str, Any]) -> bytes:
    """The file's bytes. Raises ``TypeError`` or ``ValueError`` as ``json.dumps`` does."""
    if orjson is not None and type(record) is dict and _plain(record):
        try:
            data = orjson.dumps(record, option=orjson.OPT_INDENT_2)
        except TypeError:  # an int beyond 64 bits
            data = b""
        if data and data.isascii():
            return data
    return json.dumps(record, indent=2, allow_nan=False).encode("utf-8")


def _plain(value: Any) -> bool:
    """Only JSON's own types (exactly: no subclasses), and finite floats. Plain loops: all()
    over a generator took a fifth longer."""
    kind = type(value)
    if kind is dict:
        for key, item in value.items():  # noqa: SIM110
            if type(key) is not str or not _plain(item):
                return False
        return True
    if kind is list or kind is tuple:
        for item in value:  # noqa: SIM110
            if not _plain(item):
                return False
        return True
    if kind is float:
        return _isfinite(value)
    return kind is str or kind is int or kind is bool or value is None
