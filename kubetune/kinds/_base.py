"""The declaration every trial kind makes: everything about a trial that is not the same for all.

The spec, the controller, the views and the contract ask these questions of
a study's kind and never test which kind it is: its settings and how they
are checked, the parameters and metrics it knows, the columns a person
should see first, whether it has a seed to vary and a model to keep, and
what the trial side runs (``trainer``, named by a string so the controller
never imports a training framework).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import Field, dataclass, field, fields, replace
from typing import Any, ClassVar, Protocol

from kubetune.contract import MEASURED_METRICS, Goal, MetricBounds, Params, ParamValue


class Settings(Protocol):
    """A kind's settings: a frozen dataclass whose fields are declared with ``kubetune.settings.setting``."""

    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]


@dataclass(frozen=True)
class TrialKind:
    name: str
    settings_type: type  # a dataclass declared with kubetune.settings.setting
    # "module:function" the trial side runs (kubetune.trial.runner.Train): imported there alone.
    trainer: str
    # `kubetune trial SUBCOMMAND ...` runs this kind's trials; the default kind's is empty.
    subcommand: tuple[str, ...] = ()
    # Accepted parameter names -> the value a trial uses when one is not searched; empty: the
    # space names them freely (checked by param_problem).
    hyperparameters: Mapping[str, ParamValue] = field(default_factory=dict)
    # Reported metrics and which way is better; empty: whatever the trial reports.
    metrics: Mapping[str, Goal] = field(default_factory=dict)
    # Goals of metrics an objective may name without saying which way is better.
    known_goals: Mapping[str, Goal] = field(default_factory=dict)
    bounds: MetricBounds = field(default_factory=dict)
    # Metrics reported after every epoch, for stopping rules; None: any may be.
    epoch_metrics: frozenset[str] | None = None
    # What a searched value must be: one of (categorical ones), or within a closed range.
    choices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    # The metrics narrow views (leaderboard, status) show, in this order; empty: every one reported.
    columns: tuple[str, ...] = ()
    # Metrics measured on data that never chooses (a test split): the views show them for the
    # confirmed winner alone.
    held_out: tuple[str, ...] = ()
    # The setting a confirmation run varies (fresh seeds); None: its runs repeat the trial as it is.
    seed: str | None = None
    # The setting holding a full trial's epochs (ASHA's rungs); None: stopping.max_epochs says.
    epochs: str | None = None
    # The setting naming the image its trial Jobs run; None (or null in it): the chart's trial image.
    image: str | None = None
    # Whether its trial can upload the model it trained (``--save-model``).
    saves_model: bool = False
    # The space (as YAML gives it) when the spec names none, and the points tried first in it.
    default_space: tuple[Mapping[str, Any], ...] = ()
    default_x0: tuple[Params, ...] = ()

    def defaults(self, settings: Settings) -> Params:
        """Every hyperparameter's value when not searched; one that is also a setting takes the setting's."""
        return {name: getattr(settings, name, value) for name, value in self.hyperparameters.items()}

    def settings_with(self, settings: Settings, params: Params) -> Any:
        """``settings`` with the fields a trial's params search (e.g. the CNN's epochs) replaced."""
        searched = {f.name: params[f.name] for f in fields(settings) if f.name in params}
        return replace(settings, **searched)

    def setting(self, settings: Settings, name: str | None) -> Any:
        """The value of the setting ``name`` the kind declared (seed, epochs, image); None without one."""
        return None if name is None else getattr(settings, name)

    def param_problem(self, name: str) -> str | None:
        """Why a parameter cannot be called ``name`` in this kind's space; None when it can."""
        if self.hyperparameters and name not in self.hyperparameters:
            return f"unknown hyperparameter {name!r}; the model takes {', '.join(self.hyperparameters)}"
        return None

    def metric_problem(self, name: str) -> str | None:
        """Why an objective or constraint cannot be the metric ``name``; None when it can."""
        known = [*self.metrics, *MEASURED_METRICS]
        if self.metrics and name not in known:
            return f"must be one of {', '.join(known)}; got {name!r}"
        return None

    def goal_of(self, metric: str) -> Goal | None:
        """Which way ``metric`` is better, when the kind knows."""
        return {**MEASURED_METRICS, **self.known_goals, **self.metrics}.get(metric)

    def check(self, settings: Settings, space: Sequence[str]) -> str | None:
        """What the settings and the space's parameter names cannot be together: ``"field: problem"``."""
        del settings, space
        return None
