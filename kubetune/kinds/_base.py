"""The declaration every trial kind makes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from kubetune.contract import Goal, MetricBounds, Params, ParamValue


@dataclass(frozen=True)
class TrialKind:
    name: str
    hyperparameters: Mapping[str, ParamValue]  # accepted names -> value when not searched
    metrics: Mapping[str, Goal]  # reported metrics and which way is better
    bounds: MetricBounds
    settings_type: type  # a dataclass declared with kubetune.settings.setting
    # Metrics reported after every epoch, for stopping rules; None: any may be.
    epoch_metrics: frozenset[str] | None = None
    # What a searched value must be: one of (categorical ones), or within a closed range.
    choices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    # Whether its trial can upload the model it trained (``--save-model``): a program's cannot.
    saves_model: bool = False

    def defaults(self, settings: Any) -> Params:
        """Every hyperparameter's value when not searched; one that is also a setting takes the setting's."""
        return {name: getattr(settings, name, value) for name, value in self.hyperparameters.items()}

    def settings_with(self, settings: Any, params: Params) -> Any:
        """``settings`` with the fields a trial's params search (e.g. the CNN's epochs) replaced."""
        searched = {f.name: params[f.name] for f in fields(settings) if f.name in params}
        return replace(settings, **searched)
