"""A trial kind for any training program: the user's command, run by ``kubetune trial exec``.

Its hyperparameters are whatever the spec's space names (free-form, checked
by the spec to be usable as environment variables); its metrics are whatever
the program reports. The trial side that runs it is ``kubetune.trial.program``.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from typing import ClassVar

from kubetune.kinds._base import TrialKind
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


@dataclass(frozen=True)
class ProgramSettings:
    """How each trial runs the program; the same for every trial of a study."""

    # `kubetune trial exec` runs these trials; the CNN's are plain `kubetune trial`.
    subcommand: ClassVar[tuple[str, ...]] = ("exec",)

    command: str = setting("", help="the program and its arguments, split like a shell; {name} placeholders")
    image: str | None = setting(None, help="the image trial Jobs run; null: the trial image")


PROGRAM = TrialKind(
    name="program",
    hyperparameters={},  # free-form: the space names them
    metrics={},  # whatever the program reports
    bounds={},
    settings_type=ProgramSettings,
)


def env_name(param: str) -> str:
    return param.upper()


def placeholders(token: str) -> list[str]:
    """The ``{name}`` placeholders of one command token (``{{`` and ``}}`` are literal braces).

    ValueError for a malformed token (an unmatched brace).
    """
    return [name for _, name, _, _ in string.Formatter().parse(token) if name is not None]
