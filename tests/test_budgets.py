"""Budgets besides max_trials: GPU hours and a deadline stop new trials; the study completes normally."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import pytest

from kubetune import cli
from kubetune.contract import (
    AdmissionRecord,
    AttemptRecord,
    LaunchRecord,
    Params,
    admission_object,
    attempt_object,
    params_object,
    result_object,
)
from kubetune.controller.budgets import gpu_hours
from kubetune.controller.history import read_study
from kubetune.controller.observer import Unobserved
from kubetune.controller.study import Study
from kubetune.errors import SpecError
from kubetune.spec import parse_spec
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
    assert observer.told[0][0] == 2 and observer.told[0][1] > 0  # two launched, not both admitted yet
    assert observer.told[-1] == (0, 0)
    assert all(a != b for a, b in zip(observer.told, observer.told[1:], strict=False))  # only changes
