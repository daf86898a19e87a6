"""What every launcher owes the study loop: launch, report exits with reasons, stop, adopt.

Subclass :class:`LauncherContract` and provide three fixtures:

* ``launcher``: a factory that takes a behaviour table and returns a launcher
  whose trials behave so. The table maps a trial index (as a string) to
  ``{"exit": CODE}`` (exit with CODE, writing no result) or ``{"hang": true}``
  (run until stopped); any other trial writes its result and exits 0 within
  seconds;
* ``store_uri``: where its trials write their records;
* ``trial_request``: a factory ``(store_uri, index) -> TrialRequest`` for a
  trial of the kind its trials run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from kubetune.contract import TrialRequest, result_object
from kubetune.launcher import Launcher, TrialExit
from kubetune.store import NotFound, open_store

MakeLauncher = Callable[[dict[str, Any]], Launcher]
MakeRequest = Callable[[str, int], TrialRequest]
EXIT_TIMEOUT_S = 120.0  # a fake trial exits in about a second; a pod needs scheduling first


def wait_exits(launcher: Launcher, count: int) -> list[TrialExit]:
    exits: list[TrialExit] = []
    deadline = time.monotonic() + EXIT_TIMEOUT_S
    while len(exits) < count and time.monotonic() < deadline:
        exits += launcher.wait(1.0)
    return sorted(exits, key=lambda e: e.index)


class LauncherContract:
    @pytest.fixture
    def launcher(self) -> MakeLauncher:
        raise NotImplementedError

    @pytest.fixture
    def store_uri(self) -> str:
        raise NotImplementedError

    def test_trials_run_write_their_records_and_exit_ok(
        self, launcher: MakeLauncher, store_uri: str, trial_request: MakeRequest
    ) -> None:
        trials = launcher({})
        for index in (0, 1, 2):
            trials.launch(trial_request(store_uri, index))
        assert trials.running() == {0, 1, 2}
        exits = wait_exits(trials, 3)
        assert [(e.index, e.ok) for e in exits] == [(0, True), (1, True), (2, True)]
        assert trials.running() == set()
        store = open_store(store_uri)
        assert all(store.get(result_object(i)) for i in (0, 1, 2))
        trials.close()

    def test_a_failing_trial_exits_with_its_reason(
        self, launcher: MakeLauncher, store_uri: str, trial_request: MakeRequest
    ) -> None:
        trials = launcher({"4": {"exit": 1}})
        trials.launch(trial_request(store_uri, 4))
        [ex] = wait_exits(trials, 1)
        assert (ex.index, ex.ok) == (4, False)
        assert "exited with code 1" in ex.reason
        with pytest.raises(NotFound):
            open_store(store_uri).get(result_object(4))
        trials.close()

    def test_stop_ends_a_running_trial(
        self, launcher: MakeLauncher, store_uri: str, trial_request: MakeRequest
    ) -> None:
        trials = launcher({"5": {"hang": True}})
        trials.launch(trial_request(store_uri, 5))
        trials.launch(trial_request(store_uri, 6))
        [done] = wait_exits(trials, 1)
        assert (done.index, done.ok) == (6, True)
        assert trials.running() == {5}
        trials.stop(5)
        [stopped] = wait_exits(trials, 1)
        assert (stopped.index, stopped.ok) == (5, False)
        assert trials.running() == set()
        trials.close()

    def test_wait_returns_within_its_timeout_while_trials_run(
        self, launcher: MakeLauncher, store_uri: str, trial_request: MakeRequest
    ) -> None:
        trials = launcher({"7": {"hang": True}})
        trials.launch(trial_request(store_uri, 7))
        t0 = time.monotonic()
        assert trials.wait(0.5) == []
        assert time.monotonic() - t0 < 5.0
        trials.stop(7)
        wait_exits(trials, 1)
        trials.close()

    def test_admissions_are_of_queued_trials_still_running(
        self, launcher: MakeLauncher, store_uri: str, trial_request: MakeRequest
    ) -> None:
        trials = launcher({"8": {"hang": True}})
        trials.launch(trial_request(store_uri, 8))
        admitted = trials.admitted()
        assert set(admitted) <= trials.running()
        assert trials.queue is not None or admitted == {}  # no queue: trials start at launch, none to record
        assert all(queued_at <= admitted_at for queued_at, admitted_at in admitted.values())
        trials.stop(8)
        wait_exits(trials, 1)
        assert trials.admitted() == {}
        trials.close()

    def test_a_trial_never_launched_cannot_be_adopted(
        self, launcher: MakeLauncher, store_uri: str, trial_request: MakeRequest
    ) -> None:
        trials = launcher({})
        assert trials.adopt(trial_request(store_uri, 99)) is False
        assert trials.running() == set()
        trials.close()
