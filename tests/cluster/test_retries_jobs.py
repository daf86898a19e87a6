"""A trial evicted mid-run is launched again as a new Job and the study is not charged."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client

from kubetune.contract import AttemptRecord, attempt_object
from kubetune.controller.history import read_study
from kubetune.controller.study import Study
from kubetune.kubernetes import JobSettings, KubernetesLauncher, job_name
from kubetune.spec import parse_spec
from kubetune.store import Store, open_store
from tests.cluster.controlplane import ControlPlane
from tests.gcs_emulator import FakeGCS
from tests.polling import wait_for
from tests.reliability.rig import GPU_TOLERATION, fake_trial_env

pytestmark = pytest.mark.cluster

SPEC = """
name: spot
space:
  - {name: learning_rate, type: real, low: 1.0e-5, high: 1.0e-1, prior: log-uniform}
optimizer: {n_initial_points: 3, random_state: 3}
budget: {max_trials: 3, parallel: 1, max_failed: 1, max_retries: 2, retry_backoff_s: 1}
"""


@dataclass
class Spot:
    """A study whose trial 1 sleeps long enough to be evicted; ``evictions`` of its attempts are."""

    control_plane: ControlPlane
    namespace: str
    gcs: FakeGCS
    bucket: str
    image: str

    def run(self, spec_text: str, evictions: int) -> tuple[bool, Store]:
        fake = {"default": {"sleep": 0.5}, "1": {"sleep": 8}}
        settings = JobSettings(image=self.image, gpus=0, tolerations=[GPU_TOLERATION],
                               env=fake_trial_env(fake, self.gcs.host), pendingTimeoutSeconds=120,
                               ttlSecondsAfterFinished=None)  # fmt: skip
        api = self.control_plane.api_client
        store = open_store(f"gs://{self.bucket}/spot")
        evictor = threading.Thread(target=self._evict, args=(client.CoreV1Api(api), evictions), daemon=True)
        evictor.start()
        launcher = KubernetesLauncher(api, self.namespace, settings)
        try:
            outcome = Study(parse_spec(spec_text), store, launcher, poll_s=0.2).run()
        finally:
            launcher.close()
        evictor.join(timeout=5)
        return outcome.completed, store

    def _evict(self, core: client.CoreV1Api, evictions: int) -> None:
        for attempt in range(evictions):
            selector = f"kubetune.dev/trial=1,kubetune.dev/attempt={attempt}"

            def running(selector: str = selector) -> str | None:
                pods: Any = core.list_namespaced_pod(self.namespace, label_selector=selector)
                names = [p.metadata.name for p in pods.items if p.status.phase == "Running"]
                return names[0] if names else None

            pod = wait_for(f"trial 1's attempt {attempt} running", running, 120, interval_s=0.1)
            body = client.V1Eviction(metadata=client.V1ObjectMeta(name=pod, namespace=self.namespace))
            core.create_namespaced_pod_eviction(pod, self.namespace, body)


@pytest.fixture
def spot(control_plane: ControlPlane, fake_image: str, namespace: str, gcs: FakeGCS, bucket: str) -> Spot:
    return Spot(control_plane, namespace, gcs, bucket, fake_image)


def test_an_evicted_trial_is_relaunched_and_the_study_completes_with_max_failed_1(spot: Spot) -> None:
    completed, store = spot.run(SPEC, evictions=1)
    assert completed
    api = spot.control_plane.api_client
    namespace = spot.namespace

    _, history = read_study(store)
    assert [r.status for r in history.ordered_results()] == ["succeeded"] * 3
    lost = AttemptRecord.from_json(store.get(attempt_object(1, 0)))
    assert (lost.cause, lost.reason.startswith("pod evicted (EvictionByEvictionAPI")) == ("evicted", True)

    def jobs() -> dict[str, Any]:
        listed: Any = client.BatchV1Api(api).list_namespaced_job(namespace, _preload_content=False)
        return {j["metadata"]["name"]: j for j in json.loads(listed.data)["items"]}

    first, second = jobs()[job_name("spot", 1)], jobs()[job_name("spot", 1, 1)]
    assert first["metadata"]["labels"]["kubetune.dev/attempt"] == "0"
    assert second["metadata"]["labels"]["kubetune.dev/attempt"] == "1"

    # The controller moves on when the pod succeeds; the Job's Complete condition follows.
    def complete() -> bool:
        conditions = jobs()[job_name("spot", 1, 1)]["status"].get("conditions", [])
        return any(c["type"] == "Complete" for c in conditions)

    wait_for("the second attempt's Job Complete", complete, 30)


def test_the_retry_limit_turns_the_last_eviction_into_the_trials_failure(spot: Spot) -> None:
    completed, store = spot.run(
        SPEC.replace("max_failed: 1, max_retries: 2", "max_failed: 2, max_retries: 1"), 2
    )
    assert completed
    _, history = read_study(store)
    failed = history.results[1]
    assert failed.failed and failed.reason is not None
    assert failed.reason.startswith("pod evicted (EvictionByEvictionAPI")
    assert failed.reason.endswith("(attempt 2; budget.max_retries is 1)")
    assert [a.attempt for a in history.lost[1]] == [0]
    assert [r.status for i, r in sorted(history.results.items()) if i != 1] == ["succeeded", "succeeded"]
