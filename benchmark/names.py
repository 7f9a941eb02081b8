"""Names that become path components (policies, settings, tasks): one rule, checked before any
path is built, so that nothing derived from a name can point outside ``results/``."""

from __future__ import annotations

import re

from benchmark.errors import InvalidNameError

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
MAX_NAME_LENGTH = 128


def validate_name(value: object, field: str) -> str:
    """Return ``value`` if it is a safe path component, else raise ``InvalidNameError``."""
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value) or ".." in value:
        raise InvalidNameError(
            f"{field} {value!r} is not a valid name: use letters, digits, '_', '.', '-', "
            "starting with a letter or digit, without '..'"
        )
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidNameError(f"{field} {value[:40]!r}... is longer than {MAX_NAME_LENGTH} characters")
    return value
