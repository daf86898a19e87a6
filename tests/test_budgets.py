"""Budgets besides max_trials: GPU hours and a deadline stop new trials; the study completes normally."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from kubetune import cli
from kubetune.contract import LaunchRecord, Params, params_object, result_object
from kubetune.controller.budgets import gpu_hours
from kubetune.controller.history import read_study
from kubetune.controller.study import Study
from kubetune.errors import SpecError
from kubetune.spec import parse_spec
from kubetune.store import open_store
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
