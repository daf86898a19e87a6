"""A trial Job waiting in a Kueue queue, on the real control plane and node.

Kueue is not run here: a trial Job with a queue name is created suspended,
and the test admits it as Kueue does, by unsuspending it. What this holds is
kubetune's side of the protocol with Kubernetes' own Job controller: a
suspended Job runs no pod, its wait never counts against
pendingTimeoutSeconds, and once resumed the trial runs to its end.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime
from typing import Any

import pytest
from kubernetes import client

from kubetune.controller.history import read_study
from kubetune.controller.study import Study
from kubetune.kubernetes import JobObserver, JobSettings, KubernetesLauncher, job_name
from kubetune.spec import parse_spec
from kubetune.store import open_store
from kubetune.testing.launcher import wait_exits
from tests.cluster.controlplane import ControlPlane
from tests.fake_trial import cnn_request
from tests.gcs_emulator import FakeGCS
from tests.polling import wait_for
from tests.reliability.rig import GPU_TOLERATION, fake_trial_env

pytestmark = pytest.mark.cluster

# Long enough for an admitted trial's pod to start on a busy node; each queue wait is twice it.
PENDING_S = 8


def test_a_queued_trial_waits_past_the_pending_timeout_and_runs_once_admitted(
    control_plane: ControlPlane, fake_image: str, namespace: str, gcs: FakeGCS, bucket: str
) -> None:
    settings = JobSettings(image=fake_image, gpus=0, tolerations=[GPU_TOLERATION],
                           env=fake_trial_env({}, gcs.host), pendingTimeoutSeconds=PENDING_S,
                           kueueQueueName="gpu-queue")  # fmt: skip
    api = control_plane.api_client
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    launcher = KubernetesLauncher(api, namespace, settings)
    request = cnn_request(f"gs://{bucket}/queued", 0)
    try:
        launcher.launch(request)
        name = job_name(request.study, 0)
        deadline = time.monotonic() + 2 * PENDING_S
        while time.monotonic() < deadline:
            assert launcher.wait(0.5) == [], "a queued trial was ended"
        pods = core.list_namespaced_pod(namespace, label_selector="kubetune.dev/trial=0").items
        assert pods == [], "a suspended Job ran a pod"
        assert launcher.running() == {0} and launcher.admitted() == {}
        resumed = time.time()
        batch.patch_namespaced_job(name, namespace, {"spec": {"suspend": False}})  # admitted
        queued_at, admitted_at = wait_for("the admission seen", lambda: launcher.admitted().get(0), 60)
        # Kubernetes' startTime has a resolution of a second.
        assert admitted_at - queued_at >= 2 * PENDING_S - 1 and admitted_at >= resumed - 1
        [ex] = wait_exits(launcher, 1)
        assert (ex.index, ex.ok) == (0, True), ex.reason
    finally:
        launcher.close()


SPEC = """
name: queued
space:
  - {name: learning_rate, type: real, low: 1.0e-5, high: 1.0e-1, prior: log-uniform}
optimizer: {n_initial_points: 3, random_state: 5}
budget: {max_trials: 3, parallel: 3, max_failed: 1}
"""


def test_a_study_through_a_queue_of_one_records_each_wait_and_labels_its_jobs(
    control_plane: ControlPlane, fake_image: str, namespace: str, gcs: FakeGCS, bucket: str
) -> None:
    fake = {"default": {"sleep": 0.5}}
    settings = JobSettings(image=fake_image, gpus=0, tolerations=[GPU_TOLERATION],
                           env=fake_trial_env(fake, gcs.host), pendingTimeoutSeconds=PENDING_S,
                           ttlSecondsAfterFinished=None, kueueQueueName="gpu-queue")  # fmt: skip
    api = control_plane.api_client
    spec = parse_spec(SPEC)
    store = open_store(f"gs://{bucket}/queued-study")
    admitter = QueueOfOne(client.BatchV1Api(api), namespace, hold_s=2 * PENDING_S)
    admitter.start()
    launcher = KubernetesLauncher(api, namespace, settings)
    try:
        outcome = Study(spec, store, launcher, observer=JobObserver(api, namespace, spec.name, None),
                        poll_s=0.2).run()  # fmt: skip
    finally:
        launcher.close()
        admitter.stop()
    assert outcome.completed and outcome.summary.failed == 0
    _, history = read_study(store)
    assert {i: launch.queue for i, launch in history.launched.items()} == dict.fromkeys(range(3), "gpu-queue")
    waits = {i: a[0].wait_s for i, a in history.admissions.items()}
    assert sorted(waits) == [0, 1, 2] and min(waits.values()) >= 2 * PENDING_S - 1, waits
    assert admitter.seen_queued == {0, 1, 2} and admitter.most_running == 1
    jobs = study_jobs(client.BatchV1Api(api), namespace)
    assert {job["metadata"]["labels"]["kubetune.dev/status"] for job in jobs} == {"succeeded"}


def study_jobs(batch: client.BatchV1Api, namespace: str) -> list[Any]:
    listed: Any = batch.list_namespaced_job(namespace, label_selector="kubetune.dev/study=queued",
                                            _preload_content=False)  # fmt: skip
    return list(json.loads(listed.data)["items"])


class QueueOfOne(threading.Thread):
    """Admits the study's suspended Jobs one at a time, each after ``hold_s`` in the queue, as a
    Kueue ClusterQueue with a quota of one would; notes what it saw."""

    def __init__(self, batch: client.BatchV1Api, namespace: str, hold_s: float) -> None:
        super().__init__(daemon=True)
        self.batch, self.namespace, self.hold_s = batch, namespace, hold_s
        self.seen_queued: set[int] = set()  # trials whose Job was labelled queued while suspended
        self.most_running = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(0.5):
            jobs = study_jobs(self.batch, self.namespace)
            ended = [j for j in jobs if {"succeeded", "failed"} & set(j.get("status") or {})]
            waiting = sorted(
                (j for j in jobs if j["spec"].get("suspend")), key=lambda j: j["metadata"]["name"]
            )
            active = len(jobs) - len(ended) - len(waiting)
            self.most_running = max(self.most_running, active)
            for job in waiting:
                labels = job["metadata"]["labels"]
                if labels.get("kubetune.dev/status") == "queued":
                    self.seen_queued.add(int(labels["kubetune.dev/trial"]))
            if waiting and not active and self._held(waiting[0]):
                body = {"spec": {"suspend": False}}
                self.batch.patch_namespaced_job(waiting[0]["metadata"]["name"], self.namespace, body)

    def _held(self, job: Any) -> bool:
        created = datetime.fromisoformat(job["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
        return time.time() - created.timestamp() >= self.hold_s

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)
