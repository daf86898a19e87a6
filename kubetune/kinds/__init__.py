"""Trial kinds: what a trial trains, as both sides of the contract see it.

A kind declares the hyperparameters it accepts (with the value a trial uses
for any the study does not search), the metrics it reports with their goals
and bounds, and its settings: a dataclass declared with
:func:`kubetune.settings.setting`, the same for every trial of a study, which
becomes the spec's ``trial:`` section and options of the trial's command line.
Declarations only: how a kind trains lives on the trial side
(``kubetune.trial``), so the controller imports no training framework.
"""

from typing import Any

from kubetune.kinds._base import TrialKind
from kubetune.kinds.cnn import CNN, OPTIMIZERS, PRECISIONS, CnnSettings
from kubetune.kinds.program import PROGRAM, ProgramSettings

# By the spec's `trial.kind`; the first is the default.
KINDS = {k.name: k for k in (CNN, PROGRAM)}


def kind_of(settings: Any) -> TrialKind:
    """The kind whose settings ``settings`` are."""
    return next(k for k in KINDS.values() if isinstance(settings, k.settings_type))


__all__ = ["CNN", "KINDS", "OPTIMIZERS", "PRECISIONS", "PROGRAM", "CnnSettings", "ProgramSettings",
           "TrialKind", "kind_of"]  # fmt: skip
