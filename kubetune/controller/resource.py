"""The Study resource's status: where a study stands, from its records and a clock alone.

Pure: no API calls, the clock passed in (as ``kubetune.kubernetes.tracker``).
A restarted controller derives what the one before it wrote, and it says
what ``kubetune status`` reads from the same store. What the records cannot
say, the resource's generation and the conditions it showed last (for their
transition times), is passed in.

Every field is always there, None where there is nothing to say yet: sent as
a JSON merge patch, a None removes what an earlier status said (a budget
raised on resume un-ends a study).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from kubetune.contract import REPORT_OBJECT, TrialResult
from kubetune.controller import budgets, confirmation
from kubetune.controller.best import spread
from kubetune.controller.confirmation import Confirmation
from kubetune.controller.history import History
from kubetune.controller.leaderboard import front, summarize
from kubetune.spec import Spec

Status = dict[str, Any]
Condition = dict[str, Any]


def study_status(
    spec: Spec,
    history: History,
    *,
    now: float,
    store: str,
    generation: int,
    previous: Sequence[Condition] = (),
) -> Status:
    """The ``status`` of the Study whose records are ``history``, at ``now`` (seconds since the epoch)."""
    confirmed = confirmation.review(spec, history)
    ended = ended_by(spec, history, now)
    current = phase(spec, history, confirmed, ended)
    s = summarize(spec, history.ordered_results())
    hours = budgets.gpu_hours(history, now)
    winner = confirmed.winner if confirmed else None
    return {
        "phase": current,
        "observedGeneration": generation,
        "conditions": conditions(current, ended, s.total, s.failed, generation, now, previous),
        "progress": f"{s.total}/{spec.budget.max_trials}",
        "trials": trial_counts(spec, history),
        "confirmation": _runs(confirmed),
        "best": _best(spec, s.best),
        "winner": None if winner is None else {"index": winner.trial.index, **spread(winner)},
        "gpuHours": round(hours, 2),  # 36 s of one GPU: finer would only churn the object
        "maxGpuHours": spec.budget.max_gpu_hours,
        "endedBy": ended,
        "store": store,
        "report": f"{store}/{REPORT_OBJECT}",
        # Several objectives or constraints: the trials of the Pareto front, best first by the first.
        "paretoFront": [r.index for r in front(spec, history.ordered_results())] if spec.multi else None,
    }


def _runs(confirmed: Confirmation | None) -> dict[str, int] | None:
    """The confirmation runs finished and planned; None when the study has no confirmation phase."""
    if confirmed is None or not confirmed.candidates:
        return None
    return {"finished": confirmed.finished, "total": confirmed.total}


def _best(spec: Spec, best: TrialResult | None) -> dict[str, Any] | None:
    """The best search trial, with every parameter its trials train with (as best.json)."""
    if best is None:
        return None
    return {"index": best.index, "value": best.objective_value, "params": spec.full_params(best.params)}


def ended_by(spec: Spec, history: History, now: float) -> str | None:
    """The budget that ended the search (kubetune.crd.ENDED_BY); None while search trials may start."""
    budget = spec.budget
    if history.failed >= budget.max_failed:
        return "budget.max_failed"
    if history.searched >= budget.max_trials:
        return "budget.max_trials"
    spent = budgets.spent(spec, history, now)
    # Its words start with the budget's name; the rest (hours used) moves with the clock.
    return None if spent is None else spent.partition(":")[0]


def phase(spec: Spec, history: History, confirmed: Confirmation | None, ended: str | None) -> str:
    """Pending, Running, Confirming, Completed or Failed, as the study loop would end it."""
    if history.failed >= spec.budget.max_failed:
        return "Failed"
    if not history.launched:
        return "Pending"
    if ended is None or any(not history.confirming(i) for i in history.unfinished):
        return "Running"
    if confirmed is not None and confirmed.candidates and not confirmed.complete:
        return "Confirming"
    return "Running" if history.unfinished else "Completed"


def trial_counts(spec: Spec, history: History) -> dict[str, int]:
    """The search trials' counts (confirmation runs apart), and every attempt lost and relaunched."""
    s = summarize(spec, history.ordered_results())
    waiting = [i for i in history.unfinished if not history.confirming(i)]
    queued = sum(history.queued(i) for i in waiting)
    return {
        "total": spec.budget.max_trials,
        "finished": s.total,
        "succeeded": s.succeeded,
        "failed": s.failed,
        "pruned": s.pruned,
        "running": len(waiting) - queued,
        "queued": queued,
        "lostAttempts": sum(len(lost) for lost in history.lost.values()),
    }


def conditions(
    current: str,
    ended: str | None,
    finished: int,
    failed: int,
    generation: int,
    now: float,
    previous: Sequence[Condition],
) -> list[Condition]:
    """``Running`` while trials may run, then ``Complete`` or ``Failed`` as a Job says it ended
    (``kubectl wait --for=condition=Complete study/NAME``); a condition whose status is unchanged
    keeps its transition time."""
    done = f"{finished} search trials finished"
    running = current in ("Running", "Confirming")
    made = [_condition("Running", running, RUNNING_REASONS[current], done, generation)]
    if current == "Completed":
        made.append(_condition("Complete", True, _reason(ended), done, generation))
    elif current == "Failed":
        made.append(_condition("Failed", True, _reason(ended), f"{failed} trials failed", generation))
    before = {c["type"]: c for c in previous}
    at = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for c in made:
        old = before.get(c["type"])
        c["lastTransitionTime"] = old["lastTransitionTime"] if old and old["status"] == c["status"] else at
    return made


# Why the study is, or is not, running trials: the Running condition's reason in each phase.
RUNNING_REASONS = {
    "Pending": "NoTrialLaunched",
    "Running": "TrialsRunning",
    "Confirming": "ConfirmationRuns",
    "Completed": "StudyCompleted",
    "Failed": "StudyFailed",
}


def _condition(kind: str, status: bool, reason: str, message: str, generation: int) -> Condition:
    return {"type": kind, "status": str(status), "reason": reason, "message": message,
            "observedGeneration": generation}  # fmt: skip


def _reason(ended: str | None) -> str:
    """A condition's reason, CamelCase: budget.max_gpu_hours -> MaxGpuHours."""
    return "".join(p.title() for p in (ended or "").removeprefix("budget.").split("_"))
