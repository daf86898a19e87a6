"""Studies through a real Kueue on the test cluster, installed with the chart.

Kueue's manager runs against the test control plane (tests/cluster/kueue.py);
each test's namespace has a LocalQueue over a ClusterQueue with 1 GPU of
quota. The trials are the fake trial image's, each asking for the node's one
GPU; the controller runs in its pod and its store is the GCS emulator.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from kubernetes import client

from kubetune.contract import AttemptRecord
from kubetune.controller import status
from kubetune.controller.history import read_study
from kubetune.kubernetes import job_name
from kubetune.store import open_store
from tests.cluster.fixtures import Kubectl
from tests.cluster.helpers import gpu_pod_spec, job_manifest
from tests.cluster.kueue import HIGH_PRIORITY, LOCAL_QUEUE, Queue
from tests.cluster.rest import Rest
from tests.reliability import rig as cl

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

PENDING_S = 5  # pendingTimeoutSeconds: every queued trial waits longer than this
KUEUE = {"queueName": LOCAL_QUEUE}


def admitted(workload: dict[str, Any]) -> bool:
    """Whether Kueue holds quota for it now (QuotaReserved), finished or not."""
    conditions = {c["type"]: c["status"] for c in (workload.get("status") or {}).get("conditions") or []}
    return conditions.get("QuotaReserved") == "True" and conditions.get("Finished") != "True"


@contextmanager
def sampling(probe: Callable[[], None], interval_s: float = 0.5) -> Iterator[None]:
    """Call ``probe`` every ``interval_s`` in a thread while the block runs."""
    halt = threading.Event()

    def loop() -> None:
        while not halt.wait(interval_s):
            probe()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        halt.set()
        thread.join(timeout=10)


def test_three_trials_against_a_quota_of_one_queue_and_none_fails_for_waiting(
    rig: cl.Rig, queue: Queue, kubectl: Kubectl, bucket: str
) -> None:
    study = "quota"
    store = f"gs://{bucket}/{study}"
    spec = {"name": study, "optimizer": {"n_initial_points": 3, "random_state": 1},
            "budget": {"max_trials": 3, "parallel": 3, "max_failed": 1}}  # fmt: skip
    most_admitted, queued_counts, labelled_queued = [0], set[str | None](), set[str]()
    jobs = f"/apis/batch/v1/namespaces/{rig.namespace}/jobs"
    rest = Rest(rig.bed.control_plane.kubeconfig)  # its own: the sampler runs in a thread

    def sample() -> None:
        most_admitted[0] = max(most_admitted[0], sum(map(admitted, queue.workloads())))
        for job in cl.items(rest, jobs, cl.CONTROLLER):
            queued_counts.add(job["metadata"].get("annotations", {}).get("kubetune.dev/trials-queued"))
        labelled_queued.update(
            job["metadata"]["name"] for job in cl.items(rest, jobs, "kubetune.dev/status=queued")
        )

    with sampling(sample):
        rig.install(store, spec, {"default": {"sleep": 2 * PENDING_S}}, kueue=KUEUE,
                    trial={"pendingTimeoutSeconds": PENDING_S})  # fmt: skip
        job = rig.wait_controller_finished(timeout_s=300)
    rest.close()

    assert cl.finished(job) == "Complete"
    _, history = read_study(open_store(store))
    assert [r.status for r in history.ordered_results()] == ["succeeded"] * 3
    assert history.lost == {}
    assert most_admitted[0] == 1
    # Trials waited behind others that ran longer than the pending timeout, and none was failed for it.
    assert sum(wait > PENDING_S for wait in history.queue_waits()) >= 2
    assert {"1", "0"} <= queued_counts  # on the controller's Job while trials waited, and after
    assert len(labelled_queued) >= 2  # `kubectl get jobs -L kubetune.dev/status` showed them waiting
    trial_jobs = cl.items(rig.rest, jobs, cl.TRIAL)
    assert {job["metadata"]["labels"]["kubetune.dev/status"] for job in trial_jobs} == {"succeeded"}
    snap = status.read(store)
    assert "3 admitted after a median" in status.render(snap, "table")
    # One Workload per trial attempt, each owned by its trial's Job (never the controller's).
    owners = "jsonpath={range .items[*]}{.metadata.ownerReferences[0].name}{'\\n'}{end}"
    workloads = kubectl("get", "workloads", "-n", rig.namespace, "-o", owners).stdout
    assert sorted(workloads.split()) == [job_name(study, i) for i in range(3)]


def test_a_trial_preempted_by_kueue_is_a_lost_attempt_run_again_and_not_charged(
    rig: cl.Rig, queue: Queue, bucket: str
) -> None:
    study = "preempted"
    store = f"gs://{bucket}/{study}"
    budget = {"max_trials": 2, "parallel": 1, "max_failed": 1, "max_retries": 1, "retry_backoff_s": 60}
    spec = {"name": study, "optimizer": {"n_initial_points": 2, "random_state": 1}, "budget": budget}
    rig.install(store, spec, {"default": {"sleep": 1}, "0": {"sleep": 20}}, kueue=KUEUE,
                trial={"pendingTimeoutSeconds": 60})  # fmt: skip
    cl.wait_trial_pod_running(rig.rest, rig.namespace, study, 0, timeout_s=180)
    # Another user's higher-priority work, queued behind the running trial: Kueue preempts the trial.
    other = job_manifest("urgent", gpu_pod_spec(["sleep", "3"], rig.bed.fake_trial_image))
    body = rig.bed.control_plane.api_client.sanitize_for_serialization(other)
    body["metadata"]["labels"] = {"kueue.x-k8s.io/queue-name": LOCAL_QUEUE,
                                  "kueue.x-k8s.io/priority-class": HIGH_PRIORITY}  # fmt: skip
    client.BatchV1Api(rig.bed.control_plane.api_client).create_namespaced_job(rig.namespace, body)
    job = rig.wait_controller_finished(timeout_s=300)

    assert cl.finished(job) == "Complete"
    _, history = read_study(open_store(store))
    assert [r.status for r in history.ordered_results()] == ["succeeded"] * 2
    [lost] = history.lost[0]
    assert isinstance(lost, AttemptRecord) and lost.cause == "queue_evicted"
    assert lost.reason.startswith("evicted by Kueue (Preempted: "), lost.reason
    assert set(history.admissions[0]) == {0, 1}
    again = history.admissions[0][1]
    # Launched again at once, not after the retry backoff: the queue holds the new attempt...
    assert again.queued_at - lost.ended_at < 30
    # ...until the urgent Job is done with the GPU.
    assert again.admitted_at > again.queued_at
