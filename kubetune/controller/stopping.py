"""Stopping rules: which running trial to stop early, from the learning curves in the store.

A rule is one decision: given a trial's curve (its objective after each
epoch) and every other trial's, a reason to stop it now, or None. Curves are
oriented so that higher is better; the rule never waits for a trial, so
parallel trials never wait for each other.

- ``median`` (Golovin et al., "Google Vizier", 2017; Katib's default): after
  ``grace_epochs``, stop a trial whose best value so far is worse than the
  median of the completed trials' running averages at the same epoch.
- ``asha`` (Li et al., "A System for Massively Parallel Hyperparameter
  Tuning", 2020): rungs at ``min_epochs * eta**k`` epochs; a trial goes past
  a rung only if its value there is in the top ``1/eta`` of every trial that
  reached that rung so far (the first to arrive always goes on).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from kubetune.spec import Spec

Curve = Sequence[float]  # the objective after epoch 1, 2, ...; higher is better


@dataclass(frozen=True)
class Curves:
    """What a rule sees: the curves of running trials, of completed ones (trained to the end)
    and of those stopped early."""

    running: Mapping[int, Curve]
    completed: Mapping[int, Curve]
    stopped: Mapping[int, Curve]

    def all(self) -> dict[int, Curve]:
        return {**self.completed, **self.stopped, **self.running}


class StoppingRule(Protocol):
    def should_stop(self, index: int, curves: Curves) -> str | None:
        """A reason to stop running trial ``index`` now, or None to let it go on.

        Asked once for each epoch the trial reports, in order, with its curve
        up to that epoch.
        """


class NoStopping:
    def should_stop(self, index: int, curves: Curves) -> str | None:
        del index, curves
        return None


@dataclass(frozen=True)
class MedianRule:
    grace_epochs: int
    min_trials: int

    def should_stop(self, index: int, curves: Curves) -> str | None:
        mine = curves.running[index]
        epoch = len(mine)
        if epoch < self.grace_epochs:
            return None
        averages = [statistics.fmean(c[:epoch]) for c in curves.completed.values() if len(c) >= epoch]
        if len(averages) < self.min_trials:
            return None
        median = statistics.median(averages)
        best = max(mine)
        if best < median:
            return (
                f"median rule: best {best:.4g} by epoch {epoch} is below the median {median:.4g} "
                f"of {len(averages)} completed trials' running averages"
            )
        return None


@dataclass(frozen=True)
class AshaRule:
    min_epochs: int
    eta: int
    max_epochs: int

    def rungs(self) -> list[int]:
        """Epochs at which trials are compared; the last epoch is no rung (a trial there is done)."""
        out, rung = [], self.min_epochs
        while rung < self.max_epochs:
            out.append(rung)
            rung *= self.eta
        return out

    def should_stop(self, index: int, curves: Curves) -> str | None:
        """Decided once, as the trial reaches a rung; a promotion is never taken back."""
        mine = curves.running[index]
        rung = len(mine)
        if rung not in self.rungs():
            return None
        others = [c[rung - 1] for i, c in curves.all().items() if i != index and len(c) >= rung]
        value = mine[rung - 1]
        keep = max(1, (len(others) + 1) // self.eta)
        rank = 1 + sum(v > value for v in others)
        if rank > keep:
            return (
                f"asha: {value:.4g} at rung {rung} ranks {rank} of {len(others) + 1}; "
                f"only the top {keep} (1/{self.eta}) go on"
            )
        return None


def stopping_rule(spec: Spec) -> StoppingRule:
    """The rule ``spec.stopping`` names, with its parameters."""
    s = spec.stopping
    if s.rule == "median":
        return MedianRule(s.grace_epochs, s.min_trials)
    if s.rule == "asha":
        epochs = spec.stopping_epochs()
        assert epochs is not None  # the spec's validation requires it for asha
        return AshaRule(s.min_epochs, s.eta, epochs)
    return NoStopping()
