"""A trial evicted mid-run is launched again as a new Job and the study is not charged."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from kubetune.contract import AttemptRecord, attempt_object
from kubetune.controller.history import read_study
from kubetune.controller.study import Study
from kubetune.kubernetes import JobSettings, KubernetesLauncher, job_name
from kubetune.spec import parse_spec
from kubetune.store import open_store
from tests.cluster.controlplane import ControlPlane
from tests.cluster.kubelet import LocalKubelet
from tests.gcs_emulator import FakeGCS
from tests.polling import wait_for
from tests.reliability._cluster import GPU_TOLERATION, fake_trial_env

pytestmark = pytest.mark.cluster

SPEC = """
name: spot
space:
  - {name: learning_rate, type: real, low: 1.0e-5, high: 1.0e-1, prior: log-uniform}
optimizer: {n_initial_points: 3, random_state: 3}
budget: {max_trials: 3, parallel: 1, max_failed: 1, max_retries: 2, retry_backoff_s: 1}
"""


def test_an_evicted_trial_is_relaunched_and_the_study_completes_with_max_failed_1(
    control_plane: ControlPlane, kubelet: LocalKubelet, namespace: str, gcs: FakeGCS, bucket: str, shim: Path
) -> None:
    del kubelet  # the node the trial pods run on
    fake = {"default": {"sleep": 0.5}, "1": {"sleep": 8}}
    settings = JobSettings(image="kubetune/trial:test", gpus=0, tolerations=[GPU_TOLERATION],
                           env=fake_trial_env(shim, fake, gcs.host), pendingTimeoutSeconds=120,
                           ttlSecondsAfterFinished=None)  # fmt: skip
    api = control_plane.api_client
    core = client.CoreV1Api(api)
    spec = parse_spec(SPEC)
    store = open_store(f"gs://{bucket}/spot")

    def evict_trial_1() -> None:
        def running() -> str | None:
            pods: Any = core.list_namespaced_pod(namespace, label_selector="kubetune.dev/trial=1")
            names = [p.metadata.name for p in pods.items if p.status.phase == "Running"]
            return names[0] if names else None

        pod = wait_for("trial 1's first pod running", running, 120, interval_s=0.1)
        body = client.V1Eviction(metadata=client.V1ObjectMeta(name=pod, namespace=namespace))
        core.create_namespaced_pod_eviction(pod, namespace, body)

    evictor = threading.Thread(target=evict_trial_1, daemon=True)
    evictor.start()
    launcher = KubernetesLauncher(api, namespace, settings)
    t0 = time.monotonic()
    try:
        outcome = Study(spec, store, launcher, poll_s=0.2).run()
    finally:
        launcher.close()
    evictor.join(timeout=5)
    assert outcome.completed, time.monotonic() - t0

    _, history = read_study(store)
    assert [r.status for r in history.ordered_results()] == ["succeeded"] * 3
    lost = AttemptRecord.from_json(store.get(attempt_object(1, 0)))
    assert (lost.cause, lost.reason.startswith("pod evicted (EvictionByEvictionAPI")) == ("evicted", True)
    listed: Any = client.BatchV1Api(api).list_namespaced_job(namespace, _preload_content=False)
    jobs = {j["metadata"]["name"]: j for j in json.loads(listed.data)["items"]}
    first, second = jobs[job_name("spot", 1)], jobs[job_name("spot", 1, 1)]
    assert first["metadata"]["labels"]["kubetune.dev/attempt"] == "0"
    assert second["metadata"]["labels"]["kubetune.dev/attempt"] == "1"
    assert any(c["type"] == "Complete" for c in second["status"].get("conditions", []))
