"""JSON objects read into typed dataclasses: any bytes in, a value of the declared type or one error out.

The store's records come from programs kubetune does not control (a user's
trial, a crashed process, an older or newer kubetune), so nothing read is
trusted: the bytes are bounded, parsed strictly (no NaN, no integer too long
to convert, no nesting deep enough to exhaust the stack), and every field is
converted to its annotation or refused with a message that names it. Only
the types records use are supported; an unsupported annotation is a bug,
raised as TypeError at the first read.
"""

from __future__ import annotations

import json
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, fields
from functools import cache
from typing import Any, Literal

# Integers beyond this lose precision as JSON numbers in other languages and
# as floats here; no record has a reason to hold one.
INT_MAX = 2**53


class Invalid(ValueError):
    """A value that does not fit its declared type; the message names the field."""


def load_object(data: bytes, max_bytes: int) -> dict[str, Any]:
    """``data`` as a JSON object, or Invalid saying why not (in one bounded line)."""
    if len(data) > max_bytes:
        raise Invalid(f"{_size(len(data))}, over the {_size(max_bytes)} a record may hold")
    try:
        obj = json.loads(data, parse_constant=_no_constant)
    except RecursionError:
        raise Invalid("not valid JSON: nested too deeply") from None
    except UnicodeDecodeError:
        raise Invalid("not valid JSON: not UTF-8 text") from None
    except ValueError as exc:  # JSONDecodeError, an integer with too many digits, NaN
        raise Invalid(f"not valid JSON: {short(str(exc))}") from None
    if not isinstance(obj, dict):
        raise Invalid(f"must be a JSON object, got {_kind(obj)}")
    return obj


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")


def read_fields(cls: type, obj: Mapping[str, Any], skip: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The declared fields of dataclass ``cls`` found in ``obj``, each converted to its type.

    A field without a default must be present; a field in ``skip`` is left to
    the caller; keys ``cls`` does not declare are the caller's too.
    """
    out: dict[str, Any] = {}
    for name, hint, required in _declared(cls):
        if name in skip:
            continue
        if name not in obj:
            if required:
                raise Invalid(f"{name}: required")
            continue
        out[name] = convert(obj[name], hint, name)
    return out


@cache
def _declared(cls: type) -> tuple[tuple[str, Any, bool], ...]:
    hints = typing.get_type_hints(cls)
    return tuple(
        (f.name, hints[f.name], f.default is MISSING and f.default_factory is MISSING)
        for f in fields(cls)
        if f.init
    )


def convert(value: Any, hint: Any, where: str) -> Any:
    """``value`` as type ``hint`` (int, float, str, bool, Literal, X | Y, dict[str, X], list[X], Any)."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin is Literal:
        if not any(value == a and type(value) is type(a) for a in typing.get_args(hint)):
            raise Invalid(f"{where}: must be one of {', '.join(map(str, typing.get_args(hint)))}, "
                          f"got {short(repr(value))}")  # fmt: skip
        return value
    if origin in (types.UnionType, typing.Union):
        return _union(value, typing.get_args(hint), where)
    if origin is dict:
        if not isinstance(value, dict):
            raise Invalid(f"{where}: must be an object, got {_kind(value)}")
        key_type, value_type = typing.get_args(hint)
        if key_type is not str:
            raise TypeError(f"unsupported key type {key_type!r}")
        return {k: convert(v, value_type, f"{where}.{short(k, 40)}") for k, v in value.items()}
    if origin is list:
        if not isinstance(value, list):
            raise Invalid(f"{where}: must be a list, got {_kind(value)}")
        (item,) = typing.get_args(hint)
        return [convert(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if hint in _SCALARS:
        return _SCALARS[hint](value, where)
    raise TypeError(f"unsupported annotation {hint!r}")


def _union(value: Any, options: tuple[Any, ...], where: str) -> Any:
    if value is None:
        if type(None) in options:
            return None
        raise Invalid(f"{where}: required, got null")
    # Exact matches first, so that an int stays an int where int | float is allowed.
    ranked = sorted((o for o in options if o is not type(None)), key=lambda o: not _exact(value, o))
    errors = []
    for option in ranked:
        try:
            return convert(value, option, where)
        except Invalid as exc:
            errors.append(exc)
    if all(o in _SCALARS for o in ranked) and not isinstance(value, (int, float, str)):
        names = " or ".join(dict.fromkeys(_NAMES[o] for o in ranked))
        raise Invalid(f"{where}: must be {names}, got {_kind(value)}")
    raise errors[0]


def _exact(value: Any, hint: Any) -> bool:
    return isinstance(hint, type) and type(value) is hint


def _int(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise Invalid(f"{where}: must be an integer, got {_kind(value)}")
    if abs(value) > INT_MAX:
        raise Invalid(f"{where}: must be within ±2^53, got an integer of {len(str(abs(value)))} digits")
    return value


def _float(value: Any, where: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise Invalid(f"{where}: must be a number, got {_kind(value)}")
    try:
        number = float(value)
    except OverflowError:
        raise Invalid(f"{where}: must be a finite number, got an integer too large for one") from None
    if not math.isfinite(number):
        raise Invalid(f"{where}: must be a finite number, got {value!r}")
    return number


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise Invalid(f"{where}: must be a string, got {_kind(value)}")
    return value


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise Invalid(f"{where}: must be true or false, got {_kind(value)}")
    return value


_SCALARS = {int: _int, float: _float, str: _str, bool: _bool}
_NAMES = {int: "a number", float: "a number", str: "a string", bool: "a boolean"}


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
             float: "a number", type(None): "null"}  # fmt: skip
    return names.get(type(value), type(value).__name__)


def short(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters: what an error message may quote of a value."""
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB" if n >= 2**10 else f"{n} bytes"
