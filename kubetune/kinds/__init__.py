"""Trial kinds: what a trial trains, as both sides of the contract see it.

A kind (:class:`TrialKind`) declares the hyperparameters it accepts, the
metrics it reports with their goals and bounds, the columns its views show,
whether it has a seed and a model, and its settings: a dataclass declared
with :func:`kubetune.settings.setting`, the same for every trial of a study,
which becomes the spec's ``trial:`` section and options of the trial's
command line. Declarations only: how a kind trains is named by its
``trainer`` and lives on the trial side, so the controller imports no
training framework.

Built in: the notebook's CNN (the default) and any program. A package adds
one through the entry-point group ``kubetune.kinds``, naming a TrialKind::

    [project.entry-points."kubetune.kinds"]
    mykind = "mypackage.kind:KIND"

installed wherever the controller and its trials run (both images).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from importlib import metadata

from kubetune.errors import KubetuneError
from kubetune.kinds._base import Settings, TrialKind
from kubetune.kinds.cnn import CNN, OPTIMIZERS, PRECISIONS, CnnSettings
from kubetune.kinds.program import PROGRAM, ProgramSettings

ENTRY_POINTS = "kubetune.kinds"
BUILT_IN = (CNN, PROGRAM)
DEFAULT = CNN  # a spec that names no trial.kind


@functools.cache
def registry() -> Mapping[str, TrialKind]:
    """Every kind by name: the built-in ones, then those packages register (entry points)."""
    kinds = {k.name: k for k in BUILT_IN}
    for entry in metadata.entry_points(group=ENTRY_POINTS):
        try:
            kind = entry.load()
        except Exception as exc:  # a broken plugin is one line, whatever it raises
            raise KubetuneError(f"trial kind {entry.name} ({entry.value}): cannot load: {exc}") from None
        if not isinstance(kind, TrialKind):
            raise KubetuneError(f"trial kind {entry.name} ({entry.value}): not a TrialKind")
        if kind.name in kinds:
            raise KubetuneError(f"trial kind {kind.name!r} ({entry.value}): registered twice")
        kinds[kind.name] = kind
    return kinds


def of(settings: Settings) -> TrialKind:
    """The kind whose settings ``settings`` are."""
    return next(k for k in registry().values() if isinstance(settings, k.settings_type))


def for_trial(argv: Sequence[str]) -> tuple[TrialKind, list[str]]:
    """The kind whose trial ``kubetune trial ARGV`` runs (by the subcommand ARGV starts with), and
    the arguments after it; the default kind for options alone."""
    matching = [
        k for k in registry().values() if k.subcommand and tuple(argv[: len(k.subcommand)]) == k.subcommand
    ]
    kind = max(matching, key=lambda k: len(k.subcommand), default=DEFAULT)
    return kind, list(argv[len(kind.subcommand) :])


__all__ = ["CNN", "DEFAULT", "OPTIMIZERS", "PRECISIONS", "PROGRAM", "CnnSettings", "ProgramSettings",
           "Settings", "TrialKind", "for_trial", "of", "registry"]  # fmt: skip
