"""Budgets besides max_trials: GPU hours and a deadline stop new trials; the study completes normally."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from kubetune import cli
from kubetune.contract import (
    AdmissionRecord,
    AttemptRecord,
    LaunchRecord,
    Params,
    TrialRequest,
    admission_object,
    attempt_object,
    params_object,
    result_object,
)
from kubetune.controller.budgets import gpu_hours
from kubetune.controller.history import read_history, read_study
from kubetune.controller.observer import Unobserved
from kubetune.controller.study import Plan, Study
from kubetune.errors import SpecError
from kubetune.launcher import TrialExit
from kubetune.spec import Spec, parse_spec
from kubetune.store import Store, open_store
from tests.fake_trial import succeeded
from tests.synthetic import InProcessLauncher

SPEC = """
name: budgets
space:
  - {name: learning_rate, type: real, low: 1.0e-5, high: 1.0e-1, prior: log-uniform}
optimizer: {n_initial_points: 3, random_state: 1}
budget: {max_trials: 8, parallel: 1, %(budget)s}
"""


def test_the_gpu_hour_budget_stops_new_trials_and_the_study_completes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = open_store(str(tmp_path))
    spec = parse_spec(SPEC % {"budget": "max_gpu_hours: 0.4"})
    outcome = Study(spec, store, InProcessLauncher(store, wall_s=600), poll_s=0.0).run()  # 1/6 GPU hour each
    assert outcome.completed
    _, history = read_study(store)
    assert sorted(history.results) == [0, 1, 2]  # 0.5 GPU hours after the third: none after it
    assert gpu_hours(history) == pytest.approx(0.5)
    best = json.loads(store.get("best.json"))
    assert best["ended_by"] == "budget.max_gpu_hours: 0.50 of 0.4 GPU hours used"
    assert outcome.summary.ended_by == best["ended_by"]
    assert cli.main(["status", store.uri, "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["gpu_hours"] == pytest.approx(0.5)
    assert cli.main(["status", store.uri, "-o", "table"]) == 0
    assert "GPU HOURS   0.50 of 0.4" in capsys.readouterr().out.splitlines()


def test_the_deadline_counts_from_the_first_launch_even_across_a_restart(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    spec = parse_spec(SPEC % {"budget": "max_hours: 0.5"})
    store.create("study.yaml", spec.to_yaml().encode())
    params: Params = {"learning_rate": 0.001}
    store.create(params_object(0), LaunchRecord(0, params, time.time() - 3600, "synthetic").to_json())
    store.create(result_object(0), succeeded(0, params, "val_accuracy", 0.8).to_json())
    launcher = InProcessLauncher(store)
    outcome = Study(spec, store, launcher, poll_s=0.0).run()
    assert outcome.completed and launcher.launched == []
    assert outcome.summary.ended_by is not None
    assert outcome.summary.ended_by.startswith("budget.max_hours: 1.00 of 0.5 hours since the first trial")


def test_without_budgets_every_trial_runs(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    outcome = Study(
        parse_spec(SPEC % {"budget": "max_failed: 2"}), store, InProcessLauncher(store), poll_s=0.0
    ).run()
    assert outcome.summary.total == 8 and outcome.summary.ended_by is None
    assert "ended_by" not in json.loads(store.get("best.json"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("budget: {max_gpu_hours: 0}", r"budget\.max_gpu_hours: must be at least 0\.01, got 0"),
        ("budget: {max_hours: -1}", r"budget\.max_hours: must be at least 0\.01, got -1"),
        ("budget: {max_gpu_hours: lots}", r"budget\.max_gpu_hours: must be a number, got a string 'lots'"),
        # Every trial waits in the queue first: with none allowed to, none would be launched.
        ("budget: {max_queued: 0}", r"budget\.max_queued: must be at least 1, got 0"),
    ],
)
def test_bad_budgets_name_the_field(text: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_spec(text)


# --- trials that wait in a queue (Kueue) ------------------------------------------------


T0 = 1_000_000.0


def queued_store(tmp_path: Path, queues: list[str | None], gpus: int) -> Store:
    """A study whose trials (one per queue, None: launched with none) were launched at T0."""
    store = open_store(str(tmp_path))
    store.create("study.yaml", parse_spec(SPEC % {"budget": "max_gpu_hours: 10"}).to_yaml().encode())
    params: Params = {"learning_rate": 0.001}
    for index, queue in enumerate(queues):
        launch = LaunchRecord(index, params, T0, "kubernetes", gpus, queue=queue)
        store.create(params_object(index), launch.to_json())
    return store


def test_gpu_hours_start_at_admission_for_a_trial_launched_into_a_queue(tmp_path: Path) -> None:
    store = queued_store(tmp_path, ["gpu-queue", "gpu-queue", None], gpus=2)
    # Trial 0 waited an hour, then ran half an hour so far; trial 1 is still queued;
    # trial 2 had no queue: its hours count from its launch.
    store.create(admission_object(0, 0), AdmissionRecord(0, 0, T0, T0 + 3600).to_json())
    _, history = read_study(store)
    now = T0 + 5400
    assert [history.queued(i) for i in (0, 1, 2)] == [False, True, False]
    assert gpu_hours(history, now) == pytest.approx(2 * 0.5 + 0 + 2 * 1.5)
    assert history.queue_waits() == [3600.0]


def test_a_lost_attempt_counts_from_its_admission_and_the_next_one_waits_again(tmp_path: Path) -> None:
    store = queued_store(tmp_path, ["q"], gpus=1)
    store.create(admission_object(0, 0), AdmissionRecord(0, 0, T0, T0 + 1800).to_json())
    lost = AttemptRecord(0, 0, "preempted", "pod preempted", T0, T0 + 3600)
    store.create(attempt_object(0, 0), lost.to_json())
    _, history = read_study(store)
    assert history.queued(0)  # attempt 1 waits for its own admission
    assert gpu_hours(history, T0 + 7200) == pytest.approx(0.5)  # attempt 0 held its GPU half an hour


def test_a_study_through_a_queue_records_each_admission_once(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    spec = parse_spec(SPEC % {"budget": "max_gpu_hours: 10"})
    launcher = InProcessLauncher(store, queue="gpu-queue", queued_s=90)
    assert Study(spec, store, launcher, poll_s=0.0).run().completed
    _, history = read_study(store)
    assert {launch.queue for launch in history.launched.values()} == {"gpu-queue"}
    assert sorted(history.admissions) == sorted(history.launched)
    assert all(a.attempt == 0 and a.wait_s == pytest.approx(90) for t in history.admissions.values()
               for a in t.values())  # fmt: skip
    rows = store.get("history.csv").decode().splitlines()
    assert rows[0].split(",")[-2] == "queue_wait_s" and all(row.split(",")[-2] == "90" for row in rows[1:])


class InFlight(Unobserved):
    """What a controller Job's annotations would say: each (running, queued) the study told."""

    def __init__(self) -> None:
        self.told: list[tuple[int, int]] = []

    def trials_in_flight(self, running: int, queued: int) -> None:
        self.told.append((running, queued))


def test_the_observer_hears_how_many_trials_run_and_wait_each_time_it_changes(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    spec = parse_spec(SPEC % {"budget": "max_gpu_hours: 10"})
    spec = replace(spec, budget=replace(spec.budget, max_trials=4, parallel=2))
    observer = InFlight()
    launcher = InProcessLauncher(store, queue="gpu-queue", queued_s=90)
    assert Study(spec, store, launcher, observer=observer, poll_s=0.0).run().completed
    assert observer.told[0] == (1, 1)  # launched into the queue (budget.max_queued: 1), not admitted yet
    assert observer.told[-1] == (0, 0)
    assert all(a != b for a, b in zip(observer.told, observer.told[1:], strict=False))  # only changes


# --- late binding: with a queue, each point is chosen when it may soon run ----------------------------


class Watched(InProcessLauncher):
    """Notes, at each launch, the trials launched and not ended (waiting ones too) and those ended."""

    def __init__(self, store: Store, **kw: Any) -> None:
        super().__init__(store, **kw)
        self.ended = 0
        self.seen: list[tuple[int, int]] = []  # (running, ended) when each trial was launched

    def launch(self, req: TrialRequest) -> None:
        super().launch(req)
        self.seen.append((len(self.running()), self.ended))

    def wait(self, timeout: float) -> list[TrialExit]:
        exits = super().wait(timeout)
        self.ended += len(exits)
        return exits


def late_spec(max_queued: int) -> Spec:
    spec = parse_spec(SPEC % {"budget": "max_failed: 2"})
    return replace(spec, budget=replace(spec.budget, parallel=4, max_queued=max_queued))


def quota_of_one(store: Store) -> Watched:
    """A queue that admits one trial at a time; each runs through two waits of the loop."""
    return Watched(store, queue="gpu-queue", quota=1, lasts=2)


def test_with_a_queue_the_next_point_is_asked_once_the_waiting_trial_is_admitted(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    launcher = quota_of_one(store)
    assert Study(late_spec(max_queued=1), store, launcher, poll_s=0.0).run().completed
    # One admitted, one waiting: each point is asked with every trial but the running one ended.
    assert launcher.seen == [(1, 0), *((2, k - 1) for k in range(1, 8))]
    _, history = read_study(store)
    assert sorted(history.admissions) == list(range(8))


def test_max_queued_at_parallel_chooses_every_point_at_once(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    launcher = quota_of_one(store)
    assert Study(late_spec(max_queued=4), store, launcher, poll_s=0.0).run().completed
    assert launcher.seen[:4] == [(1, 0), (2, 0), (3, 0), (4, 0)]  # three of them chosen to wait


def test_without_a_queue_max_queued_changes_nothing(tmp_path: Path) -> None:
    runs = []
    for max_queued in (1, 4):
        store = open_store(str(tmp_path / str(max_queued)))
        launcher = Watched(store, lasts=2)
        assert Study(late_spec(max_queued), store, launcher, poll_s=0.0).run().completed
        runs.append((launcher.seen, [r.params for r in launcher.launched]))
    assert runs[0] == runs[1]
    assert runs[0][0][:4] == [(1, 0), (2, 0), (3, 0), (4, 0)]  # parallel 4, all at once


class Crash(Exception):
    pass


def crash_after(turns: int) -> Callable[[Study], None]:
    """An on_progress that ends the controller after its first ``turns`` turns."""
    count = iter(range(turns, -1, -1))

    def progress(_study: Study) -> None:
        if next(count) == 0:
            raise Crash

    return progress


@pytest.mark.parametrize("turns", [3, 6])
def test_a_controller_resumed_mid_study_asks_what_an_uninterrupted_one_asks(
    tmp_path: Path, turns: int
) -> None:
    whole = open_store(str(tmp_path / "whole"))
    Study(late_spec(max_queued=1), whole, quota_of_one(whole), poll_s=0.0).run()
    parts = open_store(str(tmp_path / "parts"))
    with pytest.raises(Crash):
        Study(late_spec(1), parts, quota_of_one(parts), on_progress=crash_after(turns), poll_s=0.0).run()
    assert 0 < len(read_study(parts)[1].results) < 8
    resumed = quota_of_one(parts)
    assert Study(late_spec(max_queued=1), parts, resumed, poll_s=0.0).run().completed
    assert max(running for running, _ in resumed.seen) == 2
    points = [{i: launch.params for i, launch in read_study(s)[1].launched.items()} for s in (whole, parts)]
    assert points[0] == points[1]


def test_a_lost_trial_due_again_waits_in_the_queue_as_a_new_point_would(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    spec = late_spec(max_queued=1)
    spec = replace(spec, budget=replace(spec.budget, retry_backoff_s=0))
    launcher = InProcessLauncher(store, queue="gpu-queue", quota=1, lose={0: ("evicted", 1)})
    study = Study(spec, store, launcher, poll_s=0.0)
    study.history = read_history(store, spec)
    assert [r.index for r in study.decide().new] == [0]  # one to wait in the queue, not four
    study.launch(study.decide())
    study.admit()  # trial 0 admitted: one more may wait
    study.launch(study.decide())
    assert launcher.running() == {0, 1} and study.decide() == Plan()
    assert study.collect(launcher.wait(0)) == []  # trial 0 lost; the queue admits trial 1
    assert study.decide() == Plan()  # trial 1's admission not seen yet: it still waits
    study.admit()
    plan = study.decide()
    assert plan == Plan(again=(0,))
    study.launch(plan)
    assert study.history.queued(0) and study.decide() == Plan()  # its attempt 1 waits
