"""A trial Job waiting in a Kueue queue, on the real control plane and node.

Kueue is not run here: a trial Job with a queue name is created suspended,
and the test admits it as Kueue does, by unsuspending it. What this holds is
kubetune's side of the protocol with Kubernetes' own Job controller: a
suspended Job runs no pod, its wait never counts against
pendingTimeoutSeconds, and once resumed the trial runs to its end.
"""

from __future__ import annotations

import time

import pytest
from kubernetes import client

from kubetune.kubernetes import JobSettings, KubernetesLauncher, job_name
from kubetune.testing.launcher import wait_exits
from tests.cluster.controlplane import ControlPlane
from tests.fake_trial import cnn_request
from tests.gcs_emulator import FakeGCS
from tests.polling import wait_for
from tests.reliability.rig import GPU_TOLERATION, fake_trial_env

pytestmark = pytest.mark.cluster

PENDING_S = 3


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
        deadline = time.monotonic() + 4 * PENDING_S
        while time.monotonic() < deadline:
            assert launcher.wait(0.5) == [], "a queued trial was ended"
        pods = core.list_namespaced_pod(namespace, label_selector="kubetune.dev/trial=0").items
        assert pods == [], "a suspended Job ran a pod"
        assert launcher.running() == {0} and launcher.admitted() == {}
        resumed = time.time()
        batch.patch_namespaced_job(name, namespace, {"spec": {"suspend": False}})  # admitted
        queued_at, admitted_at = wait_for("the admission seen", lambda: launcher.admitted().get(0), 60)
        # Kubernetes' startTime has a resolution of a second.
        assert admitted_at - queued_at >= 4 * PENDING_S - 1 and admitted_at >= resumed - 1
        [ex] = wait_exits(launcher, 1)
        assert (ex.index, ex.ok) == (0, True), ex.reason
    finally:
        launcher.close()
