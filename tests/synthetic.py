"""A synthetic launcher for tests of the loop: the fake trial's objective, run in-process.

It stands in for the CNN only where a test isolates the GP loop; the real
trial runs in tests/test_trial.py and the end-to-end studies.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import replace

from kubetune.contract import EpochRecord, Params, TrialRequest, epoch_object, model_object, result_object
from kubetune.launcher import Cause, TrialExit
from kubetune.store import AlreadyExists, Store
from tests.fake_trial import curve, objective, seed_noise, succeeded


class InProcessLauncher:
    """Runs each trial instantly in-process; ``fail`` lists indices that crash, ``hang`` those
    that run until stopped. With a ``queue``, a trial runs once admitted: at launch, or with a
    ``quota``, when a trial launched before it has left room."""

    name = "synthetic"
    gpus = 1

    def __init__(
        self,
        store: Store,
        fail: frozenset[int] = frozenset(),
        hang: frozenset[int] = frozenset(),
        epochs: int = 0,
        lose: Mapping[int, tuple[Cause, int]] | None = None,
        wall_s: float = 0.0,
        score: Callable[[Params], float] = objective,
        queue: str | None = None,
        queued_s: float = 0.0,
        quota: int | None = None,
        lasts: int = 1,
        metrics: Callable[[Params], Mapping[str, float]] | None = None,
    ) -> None:
        self.store = store
        self.fail = fail
        self.hang = hang
        self.epochs = epochs  # learning-curve records each trial writes before its result
        # index -> (cause, how many of its attempts end so, as the infrastructure would end them)
        self.lose = dict(lose or {})
        self.wall_s = wall_s  # the wall time each trial's record reports
        self.score = score  # the objective's value at a point (the fake CNN's, by default)
        self.queue = queue  # a queue admits each trial queued_s after its launch
        self.queued_s = queued_s
        self.quota = quota  # trials the queue admits at once, the first launched first; None: all
        self.lasts = lasts  # the waits an admitted trial runs through: it ends in the last one
        self.metrics = metrics  # more metrics each trial reports at a point (several objectives)
        self._launched_at: dict[int, float] = {}
        self._admitted: dict[int, float] = {}  # running trials the queue admitted -> when
        self._left: dict[int, int] = {}  # waits each trial has left
        self.launched: list[TrialRequest] = []
        self._running: dict[int, TrialRequest] = {}
        self._stopped: list[int] = []

    def launch(self, req: TrialRequest) -> None:
        self.launched.append(req)
        self._running[req.index] = req
        self._launched_at[req.index] = time.time()
        self._left[req.index] = self.lasts
        self._admit()

    def adopt(self, req: TrialRequest) -> bool:
        return False

    def running(self) -> set[int]:
        return set(self._running)

    def admitted(self) -> dict[int, tuple[float, float]]:
        if self.queue is None:
            return {}
        return {i: (self._launched_at[i], at) for i, at in self._admitted.items()}

    def _admit(self) -> None:
        """The queue admits waiting trials in launch order while its quota has room."""
        for index in self._running:
            if self.quota is not None and len(self._admitted) >= self.quota:
                return
            self._admitted.setdefault(index, max(time.time(), self._launched_at[index] + self.queued_s))

    def _end(self, index: int) -> TrialRequest:
        req = self._running.pop(index)
        self._admitted.pop(index, None)
        self._admit()
        return req

    def wait(self, timeout: float) -> list[TrialExit]:
        if self._stopped:
            index = self._stopped.pop()
            self._end(index)
            return [TrialExit(index, None, "stopped")]
        # Only the oldest admitted trial runs on: deterministic order for replay tests.
        finishing = sorted(set(self._admitted) - self.hang)
        if not finishing:
            return []
        index = finishing[0]
        self._left[index] -= 1
        if self._left[index]:
            return []
        req = self._end(index)
        cause, times = self.lose.get(index, ("exit", 0))
        if times:
            self.lose[index] = (cause, times - 1)
            return [TrialExit(index, None, f"pod {cause} (attempt {req.attempt})", cause)]
        if index in self.fail:
            return [TrialExit(index, 1, "exited with code 1")]
        seed = getattr(req.settings, "seed", 0)
        value = self.score(req.params) + seed_noise(seed)
        result = succeeded(index, req.params, req.objective, value, wall_time_s=self.wall_s)
        if self.metrics is not None:
            result = replace(result, metrics={**result.metrics, **self.metrics(req.params)})
        if seed:  # another seed than the search's (a confirmation run): a test accuracy too
            result = replace(result, metrics={**result.metrics, "test_accuracy": value - 0.01})
        if req.save_model:
            self.store.put(model_object(index), f"model of trial {index}".encode())
        with contextlib.suppress(AlreadyExists):  # a replayed trial already wrote it
            for epoch in range(1, self.epochs + 1):
                metrics = {req.objective: curve(req.params, epoch, self.epochs)}
                self.store.create(
                    epoch_object(index, epoch), EpochRecord(index, epoch, metrics, 0.0).to_json()
                )
            self.store.create(result_object(index), result.to_json())
        return [TrialExit(index, 0, "succeeded")]

    def stop(self, index: int) -> None:
        if index in self._running:
            self._stopped.append(index)

    def close(self) -> None:
        self._running.clear()
        self._admitted.clear()
