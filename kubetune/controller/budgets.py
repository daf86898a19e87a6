"""The budgets users have besides a number of trials: GPU hours, and a wall-clock deadline.

Both are read from the store's records alone (so ``kubetune status`` and a
restarted controller count the same): a trial's hours are its own wall time
(running ones: so far), a lost attempt's its start to its loss, each from its
admission instead when it was launched into a queue, and each times
the GPUs its launch record says it holds. When either budget is spent no
trial starts; the running ones finish and the study completes normally.
"""

from __future__ import annotations

import time

from kubetune.controller.history import History
from kubetune.spec import Spec

HOUR = 3600.0


def gpu_hours(history: History, now: float | None = None) -> float:
    """GPU hours the study has used, every attempt counted from when it held its GPUs: its launch,
    or its admission when launched into a queue (a wait for quota holds none)."""
    now = time.time() if now is None else now
    seconds = 0.0
    for index, launch in history.launched.items():
        lost = history.lost.get(index, [])
        for a in lost:
            seconds += launch.gpus * _held_s(history, index, a.attempt, a.started_at, a.ended_at)
        result = history.results.get(index)
        if result is not None:
            seconds += launch.gpus * (result.wall_time_s or 0.0)
        else:  # running (or queued): from the start of its current attempt
            start = lost[-1].ended_at if lost else launch.launched_at
            seconds += launch.gpus * _held_s(history, index, history.attempt(index), start, now)
    return seconds / HOUR


def _held_s(history: History, index: int, attempt: int, started_at: float, ended_at: float) -> float:
    admitted = history.admitted_at(index, attempt, started_at)
    return 0.0 if admitted is None else max(0.0, ended_at - admitted)


def spent(spec: Spec, history: History, now: float | None = None) -> str | None:
    """Which budget is spent, in words; None while trials may still start."""
    now = time.time() if now is None else now
    budget = spec.budget
    if budget.max_gpu_hours is not None:
        used = gpu_hours(history, now)
        if used >= budget.max_gpu_hours:
            return f"budget.max_gpu_hours: {used:.2f} of {budget.max_gpu_hours:g} GPU hours used"
    if budget.max_hours is not None and history.launched:
        hours = (now - min(launch.launched_at for launch in history.launched.values())) / HOUR
        if hours >= budget.max_hours:
            return f"budget.max_hours: {hours:.2f} of {budget.max_hours:g} hours since the first trial"
    return None
