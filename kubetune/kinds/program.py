"""A trial kind for any training program: the user's command, run by ``kubetune trial exec``.

Its hyperparameters are whatever the spec's space names (free-form, checked
here to be usable as environment variables); its metrics are whatever the
program reports. The trial side that runs it is ``kubetune.trial.program``.
"""

from __future__ import annotations

import re
import shlex
import string
from collections.abc import Sequence
from dataclasses import dataclass

from kubetune.contract import Goal
from kubetune.kinds._base import Settings, TrialKind
from kubetune.settings import setting

# Placeholders a command may use besides the space's own parameters.
TRIAL_INDEX = "trial_index"
METRICS_FILE = "metrics_file"
BUILTIN_PLACEHOLDERS = (TRIAL_INDEX, METRICS_FILE)
# The file the program may write metrics lines to, instead of its stdout.
METRICS_FILE_ENV = "KUBETUNE_METRICS_FILE"
TRIAL_INDEX_ENV = "KUBETUNE_TRIAL_INDEX"
# A parameter is also an environment variable: its name upper-cased.
PARAM_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# A metric a program reports (its metrics lines: ``kubetune.trial.program``).
METRIC_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
# Variables a parameter must not replace: the program would not run, or not report.
RESERVED_ENV = frozenset({"PATH", "HOME", "PWD", "SHELL", "USER", "LANG", "TMPDIR", "PYTHONPATH",
                          "LD_LIBRARY_PATH", "LD_PRELOAD"})  # fmt: skip
# Metrics whose names say which way is better, by the field's conventions: an objective
# naming one needs no goal.
CONVENTIONAL_GOALS: dict[str, Goal] = {
    **dict.fromkeys(("loss", "val_loss", "test_loss", "error", "val_error", "rmse", "mae", "mse",
                     "val_rmse", "val_mae", "val_mse", "perplexity", "val_perplexity"), "minimize"),
    **dict.fromkeys(("accuracy", "val_accuracy", "test_accuracy", "f1", "val_f1", "auc", "val_auc",
                     "precision", "recall", "r2", "val_r2"), "maximize"),
}  # fmt: skip


@dataclass(frozen=True)
class ProgramSettings:
    """How each trial runs the program; the same for every trial of a study."""

    command: str = setting("", help="the program and its arguments, split like a shell; {name} placeholders")
    image: str | None = setting(None, help="the image trial Jobs run; null: the trial image")


@dataclass(frozen=True)
class ProgramKind(TrialKind):
    """Any program: parameters named freely but usable as environment variables, any metrics."""

    def param_problem(self, name: str) -> str | None:
        if not PARAM_NAME_RE.match(name):
            return (f"{name!r} is not usable as an environment variable name "
                    "(letters, digits and _, not starting with a digit)")  # fmt: skip
        env = env_name(name)
        if env in RESERVED_ENV or env.startswith("KUBETUNE_") or name in BUILTIN_PLACEHOLDERS:
            return f"{name!r} is reserved (it would replace {env} or {{{name}}})"
        return None

    def metric_problem(self, name: str) -> str | None:
        if not METRIC_NAME_RE.match(name):
            return f"{name!r} is not a metric name (letters, digits, _, .)"
        return None

    def check(self, settings: Settings, space: Sequence[str]) -> str | None:
        """Two parameters under one environment variable; a command that does not split, or names
        a placeholder no parameter fills."""
        for i, name in enumerate(space):
            for earlier in space[:i]:
                if env_name(earlier) == env_name(name):
                    return (f"space[{i}].name: {name!r} clashes with {earlier!r} "
                            f"(environment variable {env_name(name)})")  # fmt: skip
        command = settings.command if isinstance(settings, ProgramSettings) else ""
        problem = command_problem(command, space)
        return f"trial.command: {problem}" if problem else None


PROGRAM = ProgramKind(
    name="program",
    settings_type=ProgramSettings,
    trainer="kubetune.trial.program:run",
    # `kubetune trial exec` runs these trials; the CNN's are plain `kubetune trial`.
    subcommand=("exec",),
    known_goals=CONVENTIONAL_GOALS,
    image="image",
)


def env_name(param: str) -> str:
    return param.upper()


def placeholders(token: str) -> list[str]:
    """The ``{name}`` placeholders of one command token (``{{`` and ``}}`` are literal braces).

    ValueError for a malformed token (an unmatched brace).
    """
    return [name for _, name, _, _ in string.Formatter().parse(token) if name is not None]


def command_problem(command: str, space: Sequence[str]) -> str | None:
    """Why ``command`` cannot run the space's parameters: it does not split like a shell, or a
    placeholder names no parameter nor a built-in one; None when it can."""
    try:
        tokens = shlex.split(command)
    except ValueError as exc:
        return f"cannot split like a shell: {exc}"
    if not tokens:
        return "required (the program each trial runs)"
    known = [*space, *BUILTIN_PLACEHOLDERS]
    for token in tokens:
        try:
            names = placeholders(token)
        except ValueError as exc:
            return f"{token!r}: {exc} (write {{{{ and }}}} for literal braces)"
        for name in names:
            if name not in known:
                return f"placeholder {{{name}}} names no space parameter; known: {', '.join(known)}"
    return None
