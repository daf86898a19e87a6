"""Trials the infrastructure lost, launched again: same index, same parameters, a new attempt.

A lost attempt is recorded once in the store (``trials/N/attempts/AA.json``)
before its successor launches, so a controller restarted in between finds
it and launches exactly one new attempt (its Job name is deterministic per
attempt: it adopts that Job if it exists). Lost attempts never count against
``budget.max_failed``, and the optimizer never hears of them; after
``budget.max_retries`` of them the next loss is the trial's failure.
"""

from __future__ import annotations

import contextlib
import time

from kubetune.contract import AttemptRecord, attempt_object
from kubetune.controller.failures import classify
from kubetune.controller.history import History
from kubetune.controller.observer import StudyObserver
from kubetune.launcher import TrialExit
from kubetune.log import get_logger
from kubetune.spec import Spec
from kubetune.store import AlreadyExists, Store

log = get_logger("kubetune.retries")


class Retries:
    def __init__(self, spec: Spec, store: Store, observer: StudyObserver) -> None:
        self.spec = spec
        self.store = store
        self.observer = observer
        self.started: dict[int, float] = {}  # index -> when its current attempt launched
        self._due: dict[int, float] = {}  # index -> when to launch its next attempt

    def lost(self, history: History, ex: TrialExit) -> bool:
        """Whether ``ex`` (a trial that ended without a record) is a loss to retry; records it if so."""
        attempt = history.attempt(ex.index)
        if classify(ex.cause) != "infrastructure" or attempt >= self.spec.budget.max_retries:
            return False
        launch = history.launched[ex.index]
        record = AttemptRecord(ex.index, attempt, ex.cause, ex.reason,
                               self.started.get(ex.index, launch.launched_at), time.time())  # fmt: skip
        # AlreadyExists: a controller before this one recorded it, and died before relaunching.
        with contextlib.suppress(AlreadyExists):
            self.store.create(attempt_object(ex.index, attempt), record.to_json())
        history.lost.setdefault(ex.index, []).append(record)
        # A queue holds the next attempt until it has quota: a backoff would only lose it its place.
        backoff = 0 if ex.cause == "queue_evicted" else self.spec.budget.retry_backoff_s
        self._due[ex.index] = time.monotonic() + backoff
        self.observer.trial_retried(record)
        log.warning("trial_lost", index=ex.index, attempt=attempt, cause=ex.cause, reason=ex.reason,
                    retry_in_s=backoff)  # fmt: skip
        return True

    def exhausted(self, history: History, ex: TrialExit) -> str:
        """The failure reason of a loss past the retry limit (the exit's own reason otherwise)."""
        lost = history.attempt(ex.index)
        if classify(ex.cause) != "infrastructure" or not lost:
            return ex.reason
        return f"{ex.reason} (attempt {lost + 1}; budget.max_retries is {self.spec.budget.max_retries})"

    def due(self) -> list[int]:
        """Trials whose backoff is over, longest waiting first."""
        now = time.monotonic()
        return sorted((i for i, t in self._due.items() if t <= now), key=lambda i: self._due[i])

    def launched(self, index: int) -> None:
        self._due.pop(index, None)
        self.started[index] = time.time()

    def abandon(self) -> list[int]:
        """The trials waiting to be launched again, no longer waiting."""
        indices, self._due = sorted(self._due), {}
        return indices

    @property
    def waiting(self) -> bool:
        return bool(self._due)

    def next_in_s(self) -> float:
        """Seconds until the next retry is due (0 when one is)."""
        return max(0.0, min(self._due.values(), default=0.0) - time.monotonic())
