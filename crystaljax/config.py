"""Configuration plumbing shared by the CLI, the scripts and Python: one YAML loader, one
``key=value`` override parser and one typed, checked way to build config dataclasses.

Every config dataclass of crystaljax (env, agents, training, oracle options) is built
with :func:`from_mapping`, which checks each value against the field's annotation and
its bounds (declared with :func:`option`), and names the allowed keys when one is
unknown. A bad value raises :class:`ConfigError` with a one-line message.

Example::

    @dataclasses.dataclass(frozen=True)
    class Opts:
        learning_rate: float = option(1e-3, gt=0)
        seed: int = 0

    from_mapping(Opts, {"learning_rate": "2e-4"})    # Opts(learning_rate=0.0002, seed=0)
    from_mapping(Opts, {"lr": 1})                     # ConfigError: unknown key 'lr' ...
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import yaml

C = TypeVar("C")


class ConfigError(ValueError):
    """A malformed configuration: unknown key, wrong type, out-of-range or non-finite value."""


# ---- YAML and key=value ---------------------------------------------------------------------
def load_yaml(path: str | os.PathLike) -> Any:
    """Parse a YAML file. Missing file -> FileNotFoundError; bad YAML -> ConfigError."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except yaml.YAMLError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "syntax error"
        raise ConfigError(f"{path}: not valid YAML ({first})") from None


def parse_value(text: str) -> Any:
    """A command-line value as YAML (numbers, lists, booleans, null); plain text otherwise.
    ``1e-3``, which YAML 1.1 reads as a string, becomes a float."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        try:
            return float(value) if value.strip().lower() not in ("nan", "inf", "-inf") else value
        except ValueError:
            return value
    return value


def parse_overrides(items: Sequence[str] | Mapping[str, Any] | None) -> dict[str, Any]:
    """``["key=value", ...]`` -> ``{key: parsed value}`` (see :func:`parse_value`).
    A mapping is returned as a dict unchanged."""
    if items is None:
        return {}
    if isinstance(items, Mapping):
        return dict(items)
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not of the form key=value")
        out[key.strip()] = parse_value(value)
    return out


def nest_dotted(values: Mapping[str, Any]) -> dict[str, Any]:
    """``{'network.head_hidden': x}`` -> ``{'network': {'head_hidden': x}}`` (recursively)."""
    nested: dict[str, Any] = {}
    for key, value in values.items():
        outer, dot, inner = str(key).partition(".")
        if dot:
            sub = nested.setdefault(outer, {})
            if not isinstance(sub, dict):
                raise ConfigError(f"key {outer!r} given both as a value and as {key!r}")
            sub.update(nest_dotted({inner: value}))
        elif isinstance(value, Mapping) and isinstance(nested.get(key), dict):
            nested[key].update(nest_dotted(value))
        elif isinstance(value, Mapping):
            nested[key] = nest_dotted(value)  # a copy: the caller's mapping is never changed
        else:
            nested[key] = value
    return nested


def add_entry(table: dict[str, C], entry: C, kind: str) -> C:
    """Add ``entry`` (anything with a ``name``) to a registry ``table``; its name must be new."""
    if entry.name in table:
        raise ValueError(f"{kind} {entry.name!r} is already registered")
    table[entry.name] = entry
    return entry


# ---- typed fields ---------------------------------------------------------------------------
def option(default: Any = dataclasses.MISSING, *, gt: float | None = None,
           ge: float | None = None, le: float | None = None, lt: float | None = None,
           choices: Sequence[Any] | None = None, finite: bool = True,
           default_factory: Any = dataclasses.MISSING, doc: str = "") -> Any:
    """A dataclass field with bounds that :func:`from_mapping` and :func:`check` enforce.

    gt/ge/le/lt: numeric bounds; choices: allowed values; finite: numbers must be finite.
    """
    meta = {"gt": gt, "ge": ge, "le": le, "lt": lt, "choices": tuple(choices) if choices else None,
            "finite": finite, "doc": doc}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def field_names(cls: type) -> list[str]:
    """The keys a config dataclass accepts."""
    return [f.name for f in dataclasses.fields(cls)]


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, where: str) -> Any:
    """``value`` as annotation ``tp`` requires, or ConfigError."""
    origin = typing.get_origin(tp)
    if tp is Any or tp is object:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else
                          f"{where}: {value!r} is not {' or '.join(map(_type_name, args))}")
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{where} must be one of {list(allowed)}, got {value!r}")
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        if hasattr(value, "dtype") and getattr(value, "ndim", 1) == 0 and \
                value.dtype.kind in "iu":
            return int(value)
        raise ConfigError(f"{where} must be an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where} must be a number, got {value!r}") from None
        return number
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where} must be a string, got {value!r}")
    if origin in (tuple, list, Sequence) or tp in (tuple, list):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{where} must have {len(args)} entries, got {len(value)}")
            items = [_convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args))]
        else:
            item_tp = args[0] if args else Any
            items = [_convert(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple or tp is tuple else list(items)
    if origin in (dict, Mapping) or tp in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} must be a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if isinstance(value, Mapping):
            return from_mapping(tp, value, where)
        raise ConfigError(f"{where} must be a mapping of {tp.__name__} settings, got {value!r}")
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{where} must be {_type_name(tp)}, got {value!r}")
    return value


def _check_bounds(value: Any, meta: Mapping[str, Any], where: str) -> None:
    numbers = value if isinstance(value, (list, tuple)) else [value]
    for v in numbers:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if meta.get("finite", True) and not math.isfinite(v):
            raise ConfigError(f"{where} must be a finite number, got {v!r}")
        for key, ok, word in (("gt", lambda b: v > b, ">"), ("ge", lambda b: v >= b, ">="),
                              ("lt", lambda b: v < b, "<"), ("le", lambda b: v <= b, "<=")):
            bound = meta.get(key)
            if bound is not None and not ok(bound):
                raise ConfigError(f"{where} must be {word} {bound:g}, got {v!r}")
    choices = meta.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"{where} must be one of {list(choices)}, got {value!r}")


def check(config: Any, where: str = "") -> None:
    """Check every field of a config dataclass instance against its annotation and bounds
    (call from ``__post_init__`` so direct construction is checked too)."""
    hints = typing.get_type_hints(type(config))
    prefix = f"{where}." if where else ""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        converted = _convert(value, hints.get(f.name, Any), f"{prefix}{f.name}")
        if converted is not value:
            object.__setattr__(config, f.name, converted)
        _check_bounds(converted, f.metadata, f"{prefix}{f.name}")


def from_mapping(cls: type[C], values: Mapping[str, Any] | None, where: str = "") -> C:
    """Build config dataclass ``cls`` from a mapping (nested mappings or dotted keys reach
    nested dataclasses). Unknown keys, wrong types and out-of-range values raise
    ConfigError naming the key; defaults fill the rest."""
    label = where or cls.__name__
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise ConfigError(f"{label}: expected a mapping of settings, got {values!r}")
    values = nest_dotted(values)
    allowed = field_names(cls)
    unknown = sorted(set(values) - set(allowed), key=str)
    if unknown:
        raise ConfigError(f"{label}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    hints = typing.get_type_hints(cls)
    prefix = f"{where}." if where else ""
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in values:
            continue
        value = _convert(values[f.name], hints.get(f.name, Any), f"{prefix}{f.name}")
        _check_bounds(value, f.metadata, f"{prefix}{f.name}")
        kwargs[f.name] = value
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        message = str(exc)
        raise ConfigError(message if message.startswith(label) else f"{label}: {message}") \
            from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{label}: {exc}") from None


def replace(config: C, overrides: Mapping[str, Any] | None, where: str = "") -> C:
    """``config`` with fields replaced by ``overrides`` (nested/dotted keys reach nested
    dataclasses), checked like :func:`from_mapping`."""
    if not overrides:
        return config
    if not isinstance(overrides, Mapping):
        raise ConfigError(f"{where or type(config).__name__}: overrides must be a mapping, "
                          f"got {overrides!r}")
    current = to_dict(config, shallow=True)
    for key, value in nest_dotted(overrides).items():
        inner = current.get(key)
        if dataclasses.is_dataclass(inner) and isinstance(value, Mapping):
            value = replace(inner, value, f"{where}.{key}" if where else key)
        current[key] = value
    return from_mapping(type(config), current, where)


def to_dict(config: Any, shallow: bool = False) -> dict[str, Any]:
    """A config dataclass as a plain dict (tuples become lists unless ``shallow``)."""
    if shallow:
        return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    return _plain(dataclasses.asdict(config))


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    return value


__all__ = ["ConfigError", "add_entry", "check", "field_names", "from_mapping", "load_yaml", "nest_dotted",
           "option", "parse_overrides", "parse_value", "replace", "to_dict"]
