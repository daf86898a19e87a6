"""Spot GPUs through the chart on the real node: a controller killed between a
trial's loss and its relaunch, and the GPU-hour budget.

The unit tests (tests/test_retries.py, tests/test_budgets.py) hold the rules
with an in-process launcher; these hold them with the controller in its pod,
trials in containers, and the store in the GCS emulator.
"""

from __future__ import annotations

import json

import pytest

from kubetune.contract import AttemptRecord, attempt_object
from kubetune.controller.budgets import gpu_hours
from kubetune.controller.history import read_study
from kubetune.kubernetes import job_name
from kubetune.store import open_store
from tests.cluster.fixtures import Kubectl
from tests.polling import wait_for
from tests.reliability import rig as cl

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def test_a_controller_killed_between_an_eviction_and_the_relaunch_launches_exactly_one_new_attempt(
    rig: cl.Rig, kubectl: Kubectl, bucket: str
) -> None:
    rest, namespace, study = rig.rest, rig.namespace, "respot"
    store = f"gs://{bucket}/{study}"
    # The backoff leaves the killed controller's successor to launch the new attempt.
    budget = {"max_trials": 3, "parallel": 1, "max_failed": 1, "max_retries": 2, "retry_backoff_s": 20}
    spec = {"name": study, "optimizer": {"n_initial_points": 2, "random_state": 0}, "budget": budget}
    with rig.recorder() as recorder:
        rig.install(store, spec, {"default": {"sleep": 0.5}, "1": {"sleep": 15}})
        cl.evict(rest, namespace, cl.wait_trial_pod_running(rest, namespace, study, 1, timeout_s=180))
        lost = attempt_object(1, 0)
        wait_for("the lost attempt's record", lambda: lost in open_store(store).list("trials/"), 60)
        [controller] = [p["metadata"]["name"] for p in cl.pods(rest, namespace, cl.CONTROLLER)]
        kubectl("delete", "pod", controller, "-n", namespace, "--wait=false")
        job = cl.wait_controller_finished(rest, namespace, timeout_s=300)
        uids = recorder.added()

    assert cl.finished(job) == "Complete"
    trial_jobs = {name: ids for name, ids in uids.items() if name.startswith(f"{study}-")}
    expected = [job_name(study, 0), job_name(study, 1), job_name(study, 1, 1), job_name(study, 2)]
    assert sorted(trial_jobs) == sorted(expected), trial_jobs
    assert all(len(ids) == 1 for ids in trial_jobs.values()), trial_jobs  # none created twice
    _, history = read_study(open_store(store))
    assert [r.status for r in history.ordered_results()] == ["succeeded"] * 3
    record = AttemptRecord.from_json(open_store(store).get(lost))
    assert record.cause == "evicted" and history.lost[1] == [record]


def test_the_gpu_hour_budget_stops_launching_and_the_study_completes(rig: cl.Rig, bucket: str) -> None:
    rest, namespace, study = rig.rest, rig.namespace, "gpuhours"
    store = f"gs://{bucket}/{study}"
    # 0.01 GPU hours is 36 s: two 13 s trials leave it unspent, the third spends it.
    budget = {"max_trials": 10, "parallel": 1, "max_failed": 1, "max_gpu_hours": 0.01}
    rig.install(store, {"name": study, "budget": budget}, {"default": {"sleep": 13}})
    job = cl.wait_controller_finished(rest, namespace, timeout_s=300)

    assert cl.finished(job) == "Complete"
    _, history = read_study(open_store(store))
    results = history.ordered_results()
    assert [r.status for r in results] == ["succeeded"] * 3
    assert gpu_hours(history) >= 0.01 > gpu_hours(history) - (results[-1].wall_time_s or 0) / 3600
    ended_by = json.loads(open_store(store).get("best.json"))["ended_by"]
    assert ended_by.startswith("budget.max_gpu_hours: ") and ended_by.endswith(" of 0.01 GPU hours used")
    messages = [e.get("message", "") for e in cl.items(rest, f"/api/v1/namespaces/{namespace}/events")]
    assert any(f"no trial started after {ended_by}" in m for m in messages), messages
