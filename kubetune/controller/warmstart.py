"""Warm start: the finished trials of earlier studies, told to the optimizer before the first point.

``optimizer.warm_start`` lists stores (folders or gs:// URIs) of earlier
studies. A store is compatible when its study measured the same thing over
the same parameters:

* the same objectives (metrics and goals, in order) and constraints: the
  values are comparable, and what was feasible there is here;
* the same parameter names with the same types (real, integer,
  categorical): the GP's inputs mean the same; bounds and priors may differ,
  and the earlier trials outside this study's space are left out;
* the same trial settings (epochs, batch size, subsets, validation split,
  precision), except the kind's seed: a 1-epoch accuracy is not a 3-epoch one.

Anything else is refused with one line naming the field, before the study
writes anything. The stores are read once, when the study starts; warm-start
from finished studies, so a restarted controller reads the same trials and
asks the same points. What was told, from where, and what was left out and
why is logged (``warm_start``), written to ``warm_start.json`` for status and
the report.
"""

from __future__ import annotations

from collections import Counter

from kubetune.contract import TrialResult, WarmStartRecord
from kubetune.controller.history import read_study
from kubetune.errors import KubetuneError
from kubetune.spec import Categorical, Dimension, Spec, SpecError
from kubetune.store import StoreError, open_store


def load(spec: Spec) -> tuple[tuple[TrialResult, ...], WarmStartRecord]:
    """The finished trials of every warm-start store that fall in ``spec``'s space, in store order,
    and how many each store gave and left out, and why."""
    told: list[TrialResult] = []
    summary = WarmStartRecord()
    for i, uri in enumerate(spec.optimizer.warm_start):
        where = f"optimizer.warm_start[{i}]: {uri}"
        try:
            earlier, history = read_study(open_store(uri, create=False))
        except (KubetuneError, StoreError) as exc:
            raise SpecError(f"{where}: {_last_part(str(exc))}") from None
        problem = incompatibility(spec, earlier)
        if problem:
            raise SpecError(f"{where}: {problem}")
        results = history.ordered_results()
        usable = [r for r in results if r.succeeded and _inside(spec.space, r)]
        why = Counter("not succeeded" if not r.succeeded else "outside this study's space"
                      for r in results if r not in usable)  # fmt: skip
        told += usable
        summary.told[uri] = len(usable)
        summary.left_out[uri] = dict(why)
    return tuple(told), summary


def incompatibility(spec: Spec, earlier: Spec) -> str | None:
    """Why ``earlier``'s trials cannot be told to ``spec``'s optimizer; None when they can."""
    if earlier.objectives != spec.objectives:
        return f"objective {_goals(earlier)} there, {_goals(spec)} here"
    if earlier.constraints != spec.constraints:
        return "constraints differ: a trial feasible there may not be here"
    theirs = {d.name: _kind(d) for d in earlier.space}
    ours = {d.name: _kind(d) for d in spec.space}
    if theirs.keys() != ours.keys():
        return f"parameters {sorted(theirs)} there, {sorted(ours)} here"
    for name, kind in ours.items():
        if theirs[name] != kind:
            return f"{name} is {theirs[name]} there, {kind} here"
    if earlier.kind is not spec.kind:
        return f"trial.kind {earlier.kind.name} there, {spec.kind.name} here"
    changed = [
        k for k, v in vars(spec.trial).items() if k != spec.kind.seed and getattr(earlier.trial, k) != v
    ]
    if changed:
        return f"trial.{changed[0]} differs ({getattr(earlier.trial, changed[0])} there)"
    return None


def _goals(spec: Spec) -> str:
    return ", ".join(f"{o.goal} {o.metric}" for o in spec.objectives)


def _kind(d: Dimension) -> str:
    return type(d).__name__.lower()


def _inside(space: tuple[Dimension, ...], result: TrialResult) -> bool:
    for d in space:
        v = result.params.get(d.name)
        if isinstance(d, Categorical):
            if v not in d.values:
                return False
        elif not isinstance(v, int | float) or not d.low <= v <= d.high:
            return False
    return True


def _last_part(message: str) -> str:
    """A store error's problem, without the URI it already repeats."""
    return message.rsplit(": ", 1)[-1] if ": " in message else message
