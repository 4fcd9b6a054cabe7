"""Typed dataclasses from plain data (YAML/JSON): the one loader for recipes, errors naming the key.

    recipe = from_data(Recipe, yaml.safe_load(text), where="recipe.yaml")
    apply_override(data, "stages.1.max_steps=8")      # --set key.path=value (value parsed as YAML)

Unknown keys, wrong types and bad Literal values raise :class:`ConfigError` with the key's path
(``recipe.yaml: optimizer.lr: expected a number, got 'fast'``). Supported field types: bool, int,
float, str, Path, Literal[...], Optional[...], list[T], tuple[T, ...], dict[str, T] and nested
dataclasses.
"""

from __future__ import annotations

import dataclasses
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from .errors import DeemoError


class ConfigError(DeemoError):
    """A recipe or config value is unknown or has the wrong type: the message names its key."""


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp in (str, Path):
        return "a string"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (list, tuple):
        return "a list"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return str(tp)


def _convert(tp: Any, value: Any, key: str) -> Any:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(a, value, key)
            except ConfigError as e:
                errors.append(e)
        raise errors[0] if len(errors) == 1 else ConfigError(f"{key}: expected {' or '.join(_type_name(a) for a in args if a is not type(None))}, got {value!r}")
    if tp is Any:
        return value
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        return from_data(tp, value, key)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp in (str, Path):
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return tp(value)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        args = get_args(tp)
        item = args[0] if args else Any
        out = [_convert(item, v, f"{key}.{i}") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        _, vt = get_args(tp) or (str, Any)
        return {str(k): _convert(vt, v, f"{key}.{k}") for k, v in value.items()}
    raise TypeError(f"{key}: unsupported field type {tp!r}")  # a bug in the dataclass, not the input


def from_data(cls: type, data: Any, where: str = "") -> Any:
    """``cls(**data)`` with every field type-checked and unknown keys rejected."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {data!r}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    prefix = f"{where}." if where else ""
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]}: unknown key (known: {', '.join(fields)})")
    kwargs = {name: _convert(hints[name], value, f"{prefix}{name}") for name, value in data.items()}
    missing = [n for n, f in fields.items() if n not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{prefix}{missing[0]}: required key is missing")
    try:
        return cls(**kwargs)
    except ValueError as e:  # __post_init__ checks name their field
        raise ConfigError(f"{where or cls.__name__}: {e}") from None


def to_data(obj: Any) -> Any:
    """The inverse: plain data (for saving the resolved recipe as YAML)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_data(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}
    if isinstance(obj, (list, tuple)):
        return [to_data(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_data(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def apply_override(data: dict, assignment: str) -> dict:
    """``key.path=value`` into nested data (list items by index); the value is parsed as YAML."""
    import yaml

    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE (e.g. optimizer.lr=1e-4)")
    key, raw = assignment.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"--set {assignment!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    node: Any = data
    for i, p in enumerate(parts[:-1]):
        if isinstance(node, list):
            if not p.isdigit() or int(p) >= len(node):
                raise ConfigError(f"--set {key}: {'.'.join(parts[: i + 1])} is not an index of the list (0-{len(node) - 1})")
            node = node[int(p)]
        else:
            node = node.setdefault(p, {})
        if not isinstance(node, (dict, list)):
            raise ConfigError(f"--set {key}: {'.'.join(parts[: i + 1])} is not a mapping")
    last = parts[-1]
    if isinstance(node, list):
        if not last.isdigit() or int(last) >= len(node):
            raise ConfigError(f"--set {key}: {last} is not an index of the list")
        node[int(last)] = value
    else:
        node[last] = value
    return data


__all__ = ["ConfigError", "apply_override", "from_data", "to_data"]
