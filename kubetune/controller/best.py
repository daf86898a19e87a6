"""``best.json``: the best trial, and once a confirmation phase is over, its winner with its spread.

With several objectives or constraints it also holds the Pareto front of the
feasible trials (``front``, best first by the first objective), each member
with its objectives' values, params and metrics; ``best`` stays the first
objective's best feasible trial (schema 1.3, kubetune/contract.py).

A view of the records (rewritten after every trial, never read back as
truth), for a program or a person pulling the best parameters from the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kubetune.contract import MODEL_OBJECT, SCHEMA_VERSION, TrialResult
from kubetune.controller import objectives
from kubetune.controller.confirmation import Candidate, Confirmation
from kubetune.controller.leaderboard import front, summarize
from kubetune.errors import UsageError
from kubetune.spec import Spec


def best_document(
    spec: Spec,
    results: Sequence[TrialResult],
    ended_by: str | None = None,
    confirmed: Confirmation | None = None,
) -> dict[str, Any]:
    """The best search trial; once a confirmation phase is complete, its winner (the search's best
    then under ``search_best``), and while one runs, its progress (``confirmation``)."""
    s = summarize(spec, results)
    doc: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "study": spec.name,
        "objective": {"metric": spec.objective.metric, "goal": spec.objective.goal},
        "trials": {"finished": s.total, "succeeded": s.succeeded, "failed": s.failed, "pruned": s.pruned},
        "best": None,
    }
    if spec.multi:
        doc |= {
            "objectives": [{"metric": o.metric, "goal": o.goal} for o in spec.objectives],
            "constraints": [{k: v for k, v in vars(c).items() if v is not None} for c in spec.constraints],
            "front": [front_member(spec, r) for r in front(spec, results)],
        }
    if ended_by is not None:
        doc["ended_by"] = ended_by
    if s.best is not None:
        b = s.best
        doc["best"] = {
            "index": b.index,
            "value": b.objective_value,
            "params": spec.full_params(b.params),
            "metrics": b.metrics,
            "wall_time_s": b.wall_time_s,
        }
    if confirmed is not None and confirmed.started:
        doc["confirmation"] = _confirmation_document(spec, confirmed)
        winner = _confirmed_best(spec, confirmed)
        if winner is not None:
            doc["search_best"], doc["best"] = doc["best"], winner
    return doc


def front_member(spec: Spec, r: TrialResult) -> dict[str, Any]:
    """One trial of the Pareto front: its objectives' values by metric, params and metrics."""
    values = objectives.values(spec, r) or ()
    return {
        "index": r.index,
        "values": {o.metric: v for o, v in zip(spec.objectives, values, strict=True)},
        "params": spec.full_params(r.params),
        "metrics": r.metrics,
        "wall_time_s": r.wall_time_s,
    }


def pick(spec: Spec, results: Sequence[TrialResult], metric: str) -> dict[str, Any] | None:
    """The front member best on the objective ``metric`` (ties: the better on the first objective);
    None before any feasible trial succeeded. UsageError when ``metric`` is no objective."""
    names = [o.metric for o in spec.objectives]
    if metric not in names:
        raise UsageError(
            f"--pick: {metric!r} is not an objective of the study; pick one of {', '.join(names)}"
        )
    j = names.index(metric)
    members = front(spec, results)
    losses = [objectives.losses(spec, r) or () for r in members]
    best = min(range(len(members)), key=lambda i: losses[i][j], default=None)
    return None if best is None else front_member(spec, members[best])


def _confirmation_document(spec: Spec, confirmed: Confirmation) -> dict[str, Any]:
    """Each configuration's spread over its runs; no test metrics (they never choose)."""
    winner = confirmed.winner
    return {
        "top_k": spec.confirm.top_k,
        "seeds": list(confirmed.seeds),
        "finished": confirmed.finished,
        "total": confirmed.total,
        "winner": winner.trial.index if winner else None,
        "configs": [
            {
                "index": c.trial.index,
                "search_value": c.trial.objective_value,
                "params": spec.full_params(c.trial.params),
                "runs": [r.index for r in c.runs],
                **spread(c),
            }
            for c in confirmed.candidates
        ],
    }


def spread(c: Candidate) -> dict[str, Any]:
    values = c.values
    return {"n": c.n, "mean": c.mean, "sd": c.sd, "min": min(values, default=None),
            "max": max(values, default=None)}  # fmt: skip


def _confirmed_best(spec: Spec, confirmed: Confirmation) -> dict[str, Any] | None:
    """The winner: its mean metrics (its test ones the study's headline), spread and model."""
    winner = confirmed.winner
    if winner is None:
        return None
    run = winner.best_run()
    doc: dict[str, Any] = {
        "index": winner.trial.index,
        "value": winner.mean,
        "params": spec.full_params(winner.trial.params),
        "metrics": winner.mean_metrics(),
        "confirmed": {**spread(winner), "runs": [r.index for r in winner.runs]},
    }
    if run is not None and spec.kind.saves_model:
        doc["model"] = {"object": MODEL_OBJECT, "run": run.index, "metrics": run.metrics}
    return doc
