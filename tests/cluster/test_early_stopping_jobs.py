"""Early stopping through the Kubernetes launcher: a trial Job that ignores its stop request is deleted."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client

from kubetune.controller.history import read_study
from kubetune.controller.study import Study
from kubetune.kubernetes import JobObserver, JobSettings, KubernetesLauncher, job_name
from kubetune.spec import parse_spec
from kubetune.store import open_store
from tests.cluster.controlplane import ControlPlane
from tests.gcs_emulator import FakeGCS
from tests.reliability.rig import GPU_TOLERATION, fake_trial_env

pytestmark = pytest.mark.cluster

SPEC = """
name: prune
space:
  - {name: learning_rate, type: real, low: 1.0e-5, high: 1.0e-1, prior: log-uniform}
optimizer: {n_initial_points: 6, random_state: 3}
budget: {max_trials: 6, parallel: 2, max_failed: 1}
stopping: {rule: asha, eta: 2, grace_period_s: 2}
trial: {epochs: 4}
"""


def test_a_pruned_trial_that_ignores_the_request_has_its_job_deleted(
    control_plane: ControlPlane, fake_image: str, namespace: str, gcs: FakeGCS, bucket: str
) -> None:
    fake = {"default": {"epochs": 4, "epoch_s": 1.5, "ignore_stop": True}}
    settings = JobSettings(image=fake_image, gpus=0, tolerations=[GPU_TOLERATION],
                           env=fake_trial_env(fake, gcs.host), pendingTimeoutSeconds=120,
                           ttlSecondsAfterFinished=None)  # fmt: skip
    api = control_plane.api_client
    spec = parse_spec(SPEC)
    store = open_store(f"gs://{bucket}/prune")
    launcher = KubernetesLauncher(api, namespace, settings)
    try:
        outcome = Study(spec, store, launcher, observer=JobObserver(api, namespace, spec.name, None),
                        poll_s=0.2, epochs_poll_s=0.5).run()  # fmt: skip
    finally:
        launcher.close()
    assert outcome.completed

    _, history = read_study(store)
    pruned = [r for r in history.ordered_results() if r.pruned]
    assert pruned and history.failed == 0
    listed: Any = client.BatchV1Api(api).list_namespaced_job(namespace, _preload_content=False)
    jobs = {j["metadata"]["name"]: j["metadata"] for j in json.loads(listed.data)["items"]}
    for r in history.ordered_results():
        name = job_name(spec.name, r.index)
        if r.pruned:
            assert r.reason is not None and r.reason.endswith("(the trial killed without its own record)")
            assert name not in jobs or "deletionTimestamp" in jobs[name]
        else:
            assert json.loads(store.get(f"trials/{r.index:06d}/result.json"))["status"] == "succeeded"
            if r.index in history.stops:
                # Asked to stop, it wrote its result within the grace period's last poll: its own
                # record stands, while the Job deleted for the overdue stop may already be gone.
                continue
            labels = jobs[name]["labels"]
            assert (labels["kubetune.dev/status"], labels["kubetune.dev/epoch"]) == ("succeeded", "4")
