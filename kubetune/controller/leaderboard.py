"""Where the trials stand: ranked, summarised, and which of their metrics a view shows.

Domain logic every view and the confirmation phase share, computed from the
records alone. Which metrics are worth a column is the kind's to say
(``TrialKind.columns``); a kind that says nothing (a program) gets one column
per metric its trials report, in the order they first reported them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from kubetune.contract import EpochRecord, TrialResult
from kubetune.controller import objectives, pareto
from kubetune.controller.history import Epochs
from kubetune.spec import Spec


@dataclass(frozen=True)
class Summary:
    total: int
    succeeded: int
    failed: int
    best: TrialResult | None
    pruned: int = 0
    ended_by: str | None = None  # a budget besides max_trials that stopped new trials


def sign(spec: Spec) -> float:
    """1 when the objective is maximized, -1 when minimized: ``sign * value`` grows with quality."""
    return 1.0 if spec.objective.goal == "maximize" else -1.0


def ranked(spec: Spec, results: Sequence[TrialResult]) -> list[TrialResult]:
    """The succeeded feasible trials, best first by the first objective; ties go to the earliest index."""
    done = [
        r for r in results if r.succeeded and r.objective_value is not None and objectives.feasible(spec, r)
    ]
    return sorted(done, key=lambda r: (-sign(spec) * (r.objective_value or 0.0), r.index))


def front(spec: Spec, results: Sequence[TrialResult]) -> list[TrialResult]:
    """The Pareto front of the succeeded feasible trials, best first by the first objective; ties
    (equal values on every objective) all stay."""
    scored = [(r, loss) for r in ranked(spec, results) if (loss := objectives.losses(spec, r)) is not None]
    return [scored[i][0] for i in pareto.front([loss for _, loss in scored])]


def best_of(spec: Spec, results: Sequence[TrialResult]) -> TrialResult | None:
    """The best succeeded trial; ties go to the earliest index."""
    order = ranked(spec, results)
    return order[0] if order else None


def summarize(spec: Spec, results: Sequence[TrialResult]) -> Summary:
    count = Counter(r.status for r in results)
    return Summary(len(results), count["succeeded"], count["failed"], best_of(spec, results), count["pruned"])


def reported(metrics: Iterable[Mapping[str, float]]) -> list[str]:
    """Every metric name in ``metrics``, in the order first reported."""
    return list(dict.fromkeys(name for m in metrics for name in m))


def metric_columns(
    spec: Spec, results: Sequence[TrialResult], epochs: Epochs | None = None, *, every: bool = False
) -> list[str]:
    """The metric columns of a view: the kind's (``every``: and then every other metric reported,
    for history.csv), or, for a kind that names none, every metric reported in first-reported order.

    Running trials' latest epochs count as reported.
    """
    running = running_epochs(results, epochs).values()
    seen = reported([*(r.metrics for r in results), *(e.metrics for e in running)])
    declared = list(spec.kind.columns)
    if not declared:
        return seen
    return [*declared, *(m for m in seen if m not in declared)] if every else declared


def view_metrics(spec: Spec, results: Sequence[TrialResult], epochs: Epochs | None = None) -> list[str]:
    """A leaderboard's metric columns beside the objective's own: the other objectives and the
    constrained metrics first (what the study weighs), then ``metric_columns``'."""
    weighed = spec.weighed
    columns = dict.fromkeys([*weighed, *metric_columns(spec, results, epochs)])
    return [m for m in columns if m != spec.objective.metric]


def infeasible(spec: Spec, results: Sequence[TrialResult]) -> list[TrialResult]:
    """The succeeded trials that broke a constraint, in index order: shown apart, never ranked."""
    return [r for r in results if r.succeeded and not objectives.feasible(spec, r)]


def running_epochs(results: Sequence[TrialResult], epochs: Epochs | None) -> dict[int, EpochRecord]:
    """The latest epoch record of each trial that has reported one and has no result yet."""
    done = {r.index for r in results}
    return {i: e[max(e)] for i, e in (epochs or {}).items() if e and i not in done}
