"""``best.json``: the best trial, and once a confirmation phase is over, its winner with its spread.

A view of the records (rewritten after every trial, never read back as
truth), for a program or a person pulling the best parameters from the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kubetune.contract import MODEL_OBJECT, TrialResult
from kubetune.controller.confirmation import Candidate, Confirmation
from kubetune.controller.leaderboard import summarize
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
        "study": spec.name,
        "objective": {"metric": spec.objective.metric, "goal": spec.objective.goal},
        "trials": {"finished": s.total, "succeeded": s.succeeded, "failed": s.failed, "pruned": s.pruned},
        "best": None,
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
