"""The declaration every trial kind makes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from kubetune.contract import Goal, MetricBounds, ParamValue


@dataclass(frozen=True)
class TrialKind:
    name: str
    hyperparameters: Mapping[str, ParamValue]  # accepted names -> value when not searched
    metrics: Mapping[str, Goal]  # reported metrics and which way is better
    bounds: MetricBounds
    settings_type: type  # a dataclass declared with kubetune.settings.setting
    # Metrics reported after every epoch, for stopping rules; None: any may be.
    epoch_metrics: frozenset[str] | None = None
