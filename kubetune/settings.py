"""Settings declared once: a dataclass field carries its default and its rule.

The spec's sections (``optimizer``, ``budget``) and a trial kind's settings are
frozen dataclasses whose fields are declared with :func:`setting`. The spec
parser, a trial's command line and its parser, and the test that holds the
chart's values schema against the spec all read that one declaration.
"""

from __future__ import annotations

import argparse
import math
import typing
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any

from kubetune.errors import SpecError


@dataclass(frozen=True)
class Rule:
    """What a value must satisfy, besides its type."""

    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    between: tuple[float, float] | None = None  # an open interval
    help: str = ""
    item: str = ""  # for a list of strings: what each one must be


def setting(
    default: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    choices: tuple[str, ...] | None = None,
    between: tuple[float, float] | None = None,
    help: str = "",
    item: str = "",
) -> Any:
    """A dataclass field with its rule."""
    rule = Rule(minimum, maximum, choices, between, help, item)
    return field(default=default, metadata={"rule": rule})


@dataclass(frozen=True)
class Setting:
    """One declared field: its name, base type, whether null is allowed, default and rule."""

    name: str
    kind: type
    optional: bool
    default: Any
    rule: Rule

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def yaml_kind(self) -> type:
        """What YAML gives for it: a list for a tuple of strings."""
        return list if typing.get_origin(self.kind) is tuple else self.kind


def settings_of(cls: type) -> list[Setting]:
    """The declared fields of a settings dataclass, in declaration order."""
    hints = typing.get_type_hints(cls)
    return [_setting(f, hints[f.name]) for f in fields(cls)]


def _setting(f: Field[Any], hint: Any) -> Setting:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    optional = len(args) < len(typing.get_args(hint))
    kind = args[0] if optional else hint
    default = None if f.default is MISSING else f.default
    return Setting(f.name, kind, optional, default, f.metadata.get("rule", Rule()))


def check(value: Any, s: Setting, where: str) -> Any:
    """``value`` (already of the setting's type) if it satisfies the rule; else SpecError naming ``where``."""
    if value is None:
        return value
    rule = s.rule
    if isinstance(value, list):
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item:
                raise SpecError(f"{where}[{i}]: must be {rule.item or 'a string'}, got {item!r}")
        return tuple(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise SpecError(f"{where}: must be a finite number, got {value!r}")
    if rule.choices is not None and value not in rule.choices:
        raise SpecError(f"{where}: must be one of {', '.join(rule.choices)}; got {value!r}")
    if rule.minimum is not None and value < rule.minimum:
        raise SpecError(f"{where}: must be at least {rule.minimum:g}, got {value}")
    if rule.maximum is not None and value > rule.maximum:
        raise SpecError(f"{where}: must be at most {rule.maximum:.0f}, got {value}")
    if rule.between is not None and not rule.between[0] < value < rule.between[1]:
        low, high = rule.between
        raise SpecError(f"{where}: must be between {low:g} and {high:g} (exclusive), got {value}")
    return value


# --- command lines --------------------------------------------------------------


def to_argv(obj: Any) -> list[str]:
    """``obj``'s fields as ``--flag value`` pairs; null fields are left out (the parser's default)."""
    argv: list[str] = []
    for s in settings_of(type(obj)):
        value = getattr(obj, s.name)
        if value is not None:
            argv += [s.flag, repr(value) if isinstance(value, float) else str(value)]
    return argv


def add_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One option per declared field, with the field's default, choices and help."""
    for s in settings_of(cls):
        parser.add_argument(
            s.flag, type=s.kind, default=s.default, choices=s.rule.choices, help=s.rule.help or None
        )


def from_args(ns: argparse.Namespace, cls: type) -> Any:
    """An instance of ``cls`` from the options :func:`add_arguments` registered, each rule checked."""
    values = {s.name: check(getattr(ns, s.name), s, s.flag) for s in settings_of(cls)}
    return cls(**values)
