"""Strict reading of YAML mappings: unknown keys and wrong types raise, with hints.

YAML from outside (leaderboard entries) and the shipped task files go through
:func:`load_yaml_text`, which refuses anchors and aliases (``&a`` / ``*a``) and oversized
documents before anything builds the document: nested aliases expand exponentially (the
"billion laughs" bomb) in the loader and in any message that formats the value. Messages
format values with :func:`short`, never with a plain ``repr`` of something of unknown size.
"""

from __future__ import annotations

import difflib
from typing import Any, Mapping

import yaml

from cgbg_bench.errors import TaskSchemaError

__all__ = ["check_keys", "require", "short", "load_yaml_text", "load_yaml_file", "NoAliasDumper",
           "MAX_YAML_BYTES"]

#: Largest YAML document read (entries are ~2 KB, task files ~10 KB).
MAX_YAML_BYTES = 1_000_000


def short(value: Any, limit: int = 60) -> str:
    """A bounded description of ``value`` for error messages (no recursion into containers)."""
    if isinstance(value, str):
        return repr(value) if len(value) <= limit else repr(value[:limit]) + f"... ({len(value)} characters)"
    if isinstance(value, (bool, int, float)) or value is None:
        text = repr(value)
        return text if len(text) <= limit else text[:limit] + "..."
    if isinstance(value, (list, tuple, dict, set, frozenset)):
        return f"a {type(value).__name__} of {len(value)} item(s)"
    return f"a value of type {type(value).__name__}"


#: Deepest nesting of mappings and sequences accepted (task.yaml and entries need fewer than 10).
MAX_YAML_DEPTH = 64


def load_yaml_text(text: str, *, where: str, error: type[Exception] = TaskSchemaError) -> Any:
    """``yaml.safe_load`` after refusing anchors, aliases and documents over MAX_YAML_BYTES.

    The event stream is scanned first: it holds anchors and aliases unexpanded, so a
    crafted document costs its own size and nothing more.
    """
    if len(text) > MAX_YAML_BYTES:
        raise error(f"{where}: {len(text)} characters, more than the {MAX_YAML_BYTES} allowed; "
                    "is this the right file?")
    try:
        depth = 0
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
                line = event.start_mark.line + 1 if event.start_mark is not None else "?"
                raise error(f"{where}: line {line}: YAML anchors and aliases (&name, *name) are not "
                            "allowed; write the value out in full")
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_YAML_DEPTH:
                    raise error(f"{where}: nested more than {MAX_YAML_DEPTH} levels deep; is this the right file?")
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise error(f"{where}: not valid YAML: {short(str(exc), 400)}") from exc
    except RecursionError:
        raise error(f"{where}: nested too deeply to parse; is this the right file?") from None


def load_yaml_file(path, *, error: type[Exception] = TaskSchemaError) -> Any:
    """Read ``path`` (at most MAX_YAML_BYTES + 1 bytes) and :func:`load_yaml_text` it."""
    with open(path, "rb") as f:
        raw = f.read(MAX_YAML_BYTES + 1)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    return load_yaml_text(text, where=str(path), error=error)


class NoAliasDumper(yaml.SafeDumper):
    """A safe dumper that writes a value used twice out twice (no &id001 / *id001)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


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
            close = difflib.get_close_matches(str(key)[:100], sorted(allowed), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; allowed keys: {sorted(allowed)}"
            raise error(f"{where}: unknown key {short(key)}{hint}")
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
        raise error(f"{where}: expected {names}, got {short(value)}")
    return value
