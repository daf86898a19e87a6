"""A trial's numbers as the study weighs them: each objective's value, and whether it is feasible.

The first objective is the trial's ``objective_value``; the others and the
constrained metrics are read from its ``metrics`` (the controller has put the
measured ones there, ``history.measure``, and failed a succeeded trial that
lacks one, ``history.unmeasured``). Shared by the search, which learns from
them, and the views, which draw the Pareto front from them.
"""

from __future__ import annotations

from kubetune.contract import TrialResult
from kubetune.spec import Spec


def values(spec: Spec, r: TrialResult) -> tuple[float, ...] | None:
    """Each objective's value, in the spec's order; None when the trial has not them all
    (it failed, or was pruned before reporting one)."""
    if r.failed or r.objective_value is None:
        return None
    rest = [r.metrics.get(o.metric) for o in spec.objectives[1:]]
    if any(v is None for v in rest):
        return None
    return (r.objective_value, *(v for v in rest if v is not None))


def losses(spec: Spec, r: TrialResult) -> tuple[float, ...] | None:
    """``values`` turned so that lower is better for each (a maximised metric's sign flipped)."""
    found = values(spec, r)
    if found is None:
        return None
    return tuple(-v if o.goal == "maximize" else v for v, o in zip(found, spec.objectives, strict=True))


def constrained(spec: Spec, r: TrialResult) -> tuple[float, ...] | None:
    """Each constrained metric's value, in the spec's order; None when one is missing."""
    found = [r.metrics.get(c.metric) for c in spec.constraints]
    return None if any(v is None for v in found) else tuple(v for v in found if v is not None)


def feasible(spec: Spec, r: TrialResult) -> bool:
    """Whether a trial that has values keeps every constraint; one lacking a constrained metric does not."""
    found = constrained(spec, r)
    return found is not None and all(c.holds(v) for c, v in zip(spec.constraints, found, strict=True))
