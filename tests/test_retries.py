"""Trials lost to the infrastructure are launched again, never charged to the study."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from kubetune import cli
from kubetune.contract import (
    AttemptRecord,
    LaunchRecord,
    Params,
    attempt_object,
    params_object,
    result_object,
)
from kubetune.controller.history import read_study
from kubetune.controller.study import Study
from kubetune.errors import SpecError
from kubetune.launcher import Cause
from kubetune.spec import parse_spec
from kubetune.store import NotFound, Store, open_store
from tests.synthetic import InProcessLauncher

SPEC = """
name: spot
space:
  - {name: learning_rate, type: real, low: 1.0e-5, high: 1.0e-1, prior: log-uniform}
optimizer: {n_initial_points: 3, random_state: 1}
budget: {max_trials: 4, parallel: 2, max_failed: 1, max_retries: %(retries)d, retry_backoff_s: 0}
"""


def run(
    store: Store, lose: dict[int, tuple[Cause, int]], retries: int = 3
) -> tuple[Study, InProcessLauncher]:
    launcher = InProcessLauncher(store, lose=lose)
    study = Study(parse_spec(SPEC % {"retries": retries}), store, launcher, poll_s=0.0)
    study.run()
    return study, launcher


def attempts_of(launcher: InProcessLauncher, index: int) -> list[int]:
    return [r.attempt for r in launcher.launched if r.index == index]


def test_an_evicted_trial_is_launched_again_with_its_params_and_not_charged(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    _, launcher = run(store, {1: ("evicted", 2), 2: ("preempted", 1)})
    _, history = read_study(store)
    assert [r.status for r in history.ordered_results()] == ["succeeded"] * 4  # max_failed 1: still completes
    assert attempts_of(launcher, 1) == [0, 1, 2] and attempts_of(launcher, 2) == [0, 1]
    assert len({json.dumps(r.params, sort_keys=True) for r in launcher.launched if r.index == 1}) == 1
    lost = [AttemptRecord.from_json(store.get(attempt_object(1, a))) for a in (0, 1)]
    assert [(a.attempt, a.cause) for a in lost] == [(0, "evicted"), (1, "evicted")]
    assert all(a.ended_at >= a.started_at for a in lost)
    assert [a.attempt for a in history.lost[1]] == [0, 1] and history.attempt(1) == 2
    # The optimizer heard of each index once: four results, no attempt.
    assert sorted(history.results) == [0, 1, 2, 3]
    page = store.get("report.html").decode()
    lost_table = page.split("Attempts lost to the infrastructure")[1].split("</table>")[0]
    assert lost_table.count("<tr><td>") == 3 and lost_table.count(">evicted<") == 2


def test_status_shows_the_lost_attempts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = open_store(str(tmp_path))
    run(store, {1: ("evicted", 2), 2: ("preempted", 1)})
    assert cli.main(["status", store.uri, "-o", "json"]) == 0
    lost = json.loads(capsys.readouterr().out)["lost_attempts"]
    assert [(a["index"], a["attempt"], a["cause"]) for a in lost] == [(1, 0, "evicted"), (1, 1, "evicted"),
                                                                      (2, 0, "preempted")]  # fmt: skip
    assert cli.main(["status", store.uri, "-o", "table"]) == 0
    summary = capsys.readouterr().out.splitlines()[2]
    assert summary.endswith("0 running; 3 attempts lost to the infrastructure and relaunched")


def test_past_the_retry_limit_a_loss_is_the_trials_failure(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    study, launcher = run(store, {0: ("unschedulable", 5)}, retries=2)
    result = study.history.results[0]
    assert (
        result.failed
        and result.reason == "pod unschedulable (attempt 2) (attempt 3; budget.max_retries is 2)"
    )
    assert attempts_of(launcher, 0) == [0, 1, 2]
    with pytest.raises(NotFound):
        store.get(attempt_object(0, 2))  # the last loss is the failure, not an attempt


def test_an_oom_kill_is_evidence_about_the_point_and_never_retried(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    study, launcher = run(store, {3: ("oom", 1)}, retries=3)
    assert study.history.results[3].failed
    assert attempts_of(launcher, 3) == [0]


def test_a_controller_restarted_between_a_loss_and_its_relaunch_launches_exactly_one_new_attempt(
    tmp_path: Path,
) -> None:
    store = open_store(str(tmp_path))
    spec = parse_spec(SPEC % {"retries": 3})
    store.create("study.yaml", spec.to_yaml().encode())
    params: Params = {"learning_rate": 0.003}
    store.create(params_object(0), LaunchRecord(0, params, time.time(), "synthetic").to_json())
    store.create(attempt_object(0, 0), AttemptRecord(0, 0, "evicted", "pod evicted", 1.0, 2.0).to_json())
    launcher = InProcessLauncher(store)
    Study(spec, store, launcher, poll_s=0.0).run()
    assert attempts_of(launcher, 0) == [1]
    assert json.loads(store.get(result_object(0)))["status"] == "succeeded"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("budget: {max_retries: -1}", r"budget\.max_retries: must be at least 0, got -1"),
        ("budget: {retry_backoff_s: -5}", r"budget\.retry_backoff_s: must be at least 0, got -5"),
        ("budget: {max_retries: many}", r"budget\.max_retries: must be an integer, got a string 'many'"),
    ],
)
def test_bad_retry_settings_name_the_field(text: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_spec(text)
