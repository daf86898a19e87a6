"""Trial kinds: what a trial trains, as both sides of the contract see it.

A kind declares the hyperparameters it accepts (with the value a trial uses
for any the study does not search), the metrics it reports with their goals
and bounds, and its settings: a dataclass declared with
:func:`kubetune.settings.setting`, the same for every trial of a study, which
becomes the spec's ``trial:`` section and options of the trial's command line.
Declarations only: how a kind trains lives on the trial side
(``kubetune.trial``), so the controller imports no training framework.
"""

from kubetune.kinds._base import TrialKind
from kubetune.kinds.cnn import CNN, PRECISIONS, CnnSettings

__all__ = ["CNN", "PRECISIONS", "CnnSettings", "TrialKind"]
