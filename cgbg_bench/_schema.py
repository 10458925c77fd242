"""Strict reading of YAML mappings: unknown keys and wrong types raise, with hints."""

from __future__ import annotations

import difflib
from typing import Any, Mapping

from cgbg_bench.errors import TaskSchemaError

__all__ = ["check_keys", "require"]


def check_keys(
    data: Any,
    *,
    where: str,
    required: set[str],
    optional: set[str] = frozenset(),
    error: type[Exception] = TaskSchemaError,
) -> Mapping[str, Any]:
    """Return ``data`` if it is a mapping with exactly the allowed keys, else raise ``error``."""
    if not isinstance(data, Mapping):
        raise error(f"{where}: expected a mapping, got {type(data).__name__}")
    allowed = set(required) | set(optional)
    for key in data:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; allowed keys: {sorted(allowed)}"
            raise error(f"{where}: unknown key {key!r}{hint}")
    missing = sorted(set(required) - set(data))
    if missing:
        raise error(f"{where}: missing required key(s) {missing}")
    return data


def require(value: Any, types: type | tuple[type, ...], *, where: str, error=TaskSchemaError) -> Any:
    """Check ``isinstance(value, types)`` (bool is never accepted as a number)."""
    is_bool = isinstance(value, bool)
    wants_bool = types is bool or (isinstance(types, tuple) and bool in types)
    if not isinstance(value, types) or (is_bool and not wants_bool):
        names = types.__name__ if isinstance(types, type) else " or ".join(t.__name__ for t in types)
        raise error(f"{where}: expected {names}, got {value!r}")
    return value
