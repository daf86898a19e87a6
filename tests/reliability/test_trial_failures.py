"""Trials that fail in every way we know, locally and as Kubernetes Jobs.

Each failure is recorded as a failed trial with its reason while the study
goes on; after budget.max_failed failures the study stops with a failed
status, and best.json still holds the best finished trial. Failures are never
told to the optimizer as invented scores.

The cluster study runs once (module fixture) and is read by several tests:
its trials fail by exit code, exit 137, activeDeadlineSeconds, malformed and
out-of-range records, NaN loss, a pod that cannot schedule (the only GPU is
held by another pod) and an evicted pod. The same run is then checked for
security: the controller's own token, restricted Pod Security, clean logs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kubetune.contract import AttemptRecord, TrialResult, attempt_object
from kubetune.controller.history import read_study
from kubetune.errors import StudyFailed
from kubetune.store import open_store
from tests.cluster.controlplane import ControlPlane
from tests.cluster.helpers import gpu_pod_spec
from tests.cluster.rest import ApiError, Rest
from tests.reliability import rig as cl
from tests.reliability.checks import (
    assert_best_is_the_best_record,
    assert_failures_not_told,
    assert_no_credentials,
    fake_cli,
    fake_cli_env,
    run,
)

# --- on one machine ------------------------------------------------------------------

LOCAL_SPEC = """
name: local-faults
optimizer: {n_initial_points: 2, random_state: 0}
budget: {max_trials: 10, parallel: 1, max_failed: 5}
trial: {epochs: 1}
"""
LOCAL_FAKE = {
    "default": {"sleep": 0.1},
    "1": {"exit": 1},
    "2": {"exit": 137},
    "4": {"write": "malformed"},
    "5": {"write": "out_of_range"},
    "6": {"write": "nan"},
}
# Index -> a piece of the recorded reason.
LOCAL_REASONS = {
    1: "exited with code 1",
    2: "killed by SIGKILL (exit 137",
    4: "malformed result record: not valid JSON",
    5: "malformed result record: metrics.val_accuracy: must be within [0, 1], got 1.7",
    6: "loss became NaN at epoch 1",
}


def test_local_failures_are_recorded_and_max_failed_fails_the_study(tmp_path: Path, shim: Path) -> None:
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(LOCAL_SPEC)
    store_path = tmp_path / "store"
    out = run(fake_cli("run", str(spec_path), "--store", str(store_path)), fake_cli_env(shim, LOCAL_FAKE))

    assert out.returncode == StudyFailed.exit_code, out.stderr[-3000:]
    assert out.stderr.splitlines()[-1] == (
        "kubetune: study 'local-faults' failed: 5 trials failed (budget.max_failed is 5)"
    )
    assert "Traceback" not in out.stderr
    spec, history = read_study(open_store(str(store_path)))
    assert sorted(history.results) == list(range(7))  # stopped at the fifth failure
    assert_reasons(history.ordered_results(), LOCAL_REASONS)
    assert_best_is_the_best_record(open_store(str(store_path)), spec, history.ordered_results())
    assert json.loads(out.stdout)["index"] in (0, 3)  # the CLI still prints the best trial
    assert_failures_not_told(spec, history)


def assert_reasons(results: list[TrialResult], reasons: dict[int, str]) -> None:
    failed = {r.index: r.reason or "" for r in results if not r.succeeded}
    assert sorted(failed) == sorted(reasons), failed
    wrong = {i: failed[i] for i, piece in reasons.items() if piece not in failed[i]}
    assert wrong == {}, f"reasons missing their cause: {wrong}"


# --- in the cluster ------------------------------------------------------------------------

STUDY = "faults"
PENDING_S = 8  # pendingTimeoutSeconds: a normal trial schedules in about a second
DEADLINE_S = 10  # activeDeadlineSeconds: a normal fake trial ends in 1-3 s
FAKE = {
    "default": {"sleep": 0.2},
    "2": {"exit": 1},
    "3": {"exit": 137},
    "5": {"write": "malformed"},
    "6": {"write": "out_of_range"},
    "7": {"write": "nan"},
    "8": {"hang": True},
    "9": {"sleep": 300},  # evicted by the test while it runs
    "10": {"write": "forged"},  # a result that claims to be trial 1's, with a score no trial reached
    "11": {"write": "list_metrics"},  # metrics: [0.9], once a traceback in every later command
}
Obj = dict[str, Any]
# Trial 0 cannot schedule: the node's only GPU is held by another pod.
REASONS = {
    0: f"not scheduled within {PENDING_S} s: 0/1 nodes are available: 1 Insufficient nvidia.com/gpu",
    2: "exited with code 1",
    3: "killed by SIGKILL (exit 137",
    5: "malformed result record: not valid JSON",
    6: "malformed result record: metrics.val_accuracy: must be within [0, 1]",
    7: "loss became NaN at epoch 1",
    8: "DeadlineExceeded",
    9: "pod evicted (EvictionByEvictionAPI",
    10: "result for trial 1 found under trial 10",
    11: "malformed result record: metrics: must be an object, got a list",
}


@dataclass
class FailedStudy:
    namespace: str
    store: str
    controller: Obj
    controller_pods: list[Obj]
    trial_pods: list[Obj]
    events: list[Obj]
    logs: dict[str, str]  # pod name -> what it printed
    tokens: set[str]  # the API tokens the controller pods were given
    job_uids: dict[str, list[str]]  # Job name -> UIDs of its ADDED events
    jobs: list[str]  # the Jobs left at the end


@pytest.fixture(scope="module")
def failed_study(
    testbed: cl.Testbed, module_namespace: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FailedStudy]:
    rig = cl.Rig(testbed, module_namespace, tmp_path_factory.mktemp("values"))
    ns, rest, node = rig.namespace, rig.rest, rig.node
    bucket = "kubetune-reliability-faults"
    testbed.gcs.create_bucket(bucket)
    store = f"gs://{bucket}/{STUDY}"
    study = {
        "name": STUDY,
        "optimizer": {"n_initial_points": 2, "random_state": 0},
        # No retries: every fault here is to be recorded as the trial's failure
        # (tests/cluster/test_retries_jobs.py has the evicted trial launched again).
        "budget": {"max_trials": 12, "parallel": 1, "max_failed": len(REASONS), "max_retries": 0},
        "trial": {"epochs": 1},
    }
    trial = {"activeDeadlineSeconds": DEADLINE_S, "pendingTimeoutSeconds": PENDING_S}
    # The node's one GPU is taken before the study starts, and given back once
    # trial 0 failed for want of it.
    hog = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "gpu-hog"},
        "spec": gpu_pod_spec(["sleep", "600"], testbed.fake_trial_image),
    }
    rest.post(f"/api/v1/namespaces/{ns}/pods", hog)
    cl.wait_pod_running(rest, ns, "gpu-hog")
    with rig.recorder() as recorder:
        rig.install(store, study, FAKE, trial=trial)
        tokens = cl.wait_controller_token(rest, node, ns)
        cl.wait_result(store, 0, timeout_s=60)
        rest.delete(f"/api/v1/namespaces/{ns}/pods/gpu-hog")
        cl.evict(rest, ns, cl.wait_trial_pod_running(rest, ns, STUDY, 9, timeout_s=120))
        controller = cl.wait_controller_finished(rest, ns, timeout_s=120)
    yield FailedStudy(
        namespace=ns,
        store=store,
        controller=controller,
        controller_pods=cl.pods(rest, ns, cl.CONTROLLER),
        trial_pods=cl.pods(rest, ns, f"{cl.TRIAL},kubetune.dev/study={STUDY}"),
        events=cl.items(rest, f"/api/v1/namespaces/{ns}/events"),
        logs=cl.namespace_logs(node, ns),
        tokens=tokens,
        job_uids=recorder.added(),
        jobs=[j["metadata"]["name"] for j in cl.items(rest, f"/apis/batch/v1/namespaces/{ns}/jobs")],
    )
    rig.close()


@pytest.mark.cluster
@pytest.mark.slow
def test_each_failure_is_recorded_with_its_reason(failed_study: FailedStudy) -> None:
    _, history = read_study(open_store(failed_study.store))
    results = history.ordered_results()
    assert sorted(history.results) == list(range(12)), sorted(history.results)
    assert_reasons(results, REASONS)
    assert [r.index for r in results if r.succeeded] == [1, 4]


@pytest.mark.cluster
@pytest.mark.slow
def test_max_failed_fails_the_controller_job_at_once_with_an_event(failed_study: FailedStudy) -> None:
    status = failed_study.controller["status"]
    failed = {c["type"]: c for c in status.get("conditions") or []}["Failed"]
    assert failed["status"] == "True"
    assert failed["reason"] == "PodFailurePolicy"  # exit 3: no second controller pod tried again
    assert len(failed_study.controller_pods) == 1
    name = failed_study.controller["metadata"]["name"]
    mine = [e for e in failed_study.events if e["involvedObject"]["name"] == name]
    [study_failed] = [e for e in mine if e["reason"] == "StudyFailed"]
    assert study_failed["type"] == "Warning"
    assert re.fullmatch(
        r"study failed: 2 trials succeeded, 10 failed; best trial [14]", study_failed["message"]
    )
    annotations = failed_study.controller["metadata"]["annotations"]
    assert annotations["kubetune.dev/study-status"] == "failed"
    assert annotations["kubetune.dev/trials-failed"] == "10"
    reasons = [e["reason"] for e in mine]
    assert reasons.count("TrialFailed") == 10 and reasons.count("TrialSucceeded") == 2


@pytest.mark.cluster
@pytest.mark.slow
def test_best_json_still_holds_the_best_finished_trial(failed_study: FailedStudy) -> None:
    store = open_store(failed_study.store)
    spec, history = read_study(store)
    assert_best_is_the_best_record(store, spec, history.ordered_results())
    # Trial 10's forged result (trial 1's, 0.999) is neither the best nor trial 1's.
    best = json.loads(store.get("best.json"))["best"]
    assert best["index"] in (1, 4) and best["value"] < 0.99
    assert history.results[1].objective_value != 0.999


@pytest.mark.cluster
@pytest.mark.slow
def test_failed_trials_are_not_told_to_the_optimizer(failed_study: FailedStudy) -> None:
    spec, history = read_study(open_store(failed_study.store))
    assert_failures_not_told(spec, history)


@pytest.mark.cluster
@pytest.mark.slow
def test_one_job_per_trial_and_the_unschedulable_one_deleted(failed_study: FailedStudy) -> None:
    names = {f"{STUDY}-{i:06d}" for i in range(12)}
    trial_jobs = {n: uids for n, uids in failed_study.job_uids.items() if n.startswith(f"{STUDY}-0")}
    assert set(trial_jobs) == names
    assert all(len(uids) == 1 for uids in trial_jobs.values()), trial_jobs
    # The Job that never scheduled is deleted once its failure is recorded; the others stay
    # (until ttlSecondsAfterFinished), labelled with their outcome.
    assert sorted(n for n in failed_study.jobs if n in names) == sorted(names - {f"{STUDY}-000000"})


# --- what the same run shows about security ------------------------------------------------


@pytest.mark.cluster
@pytest.mark.slow
def test_no_credential_in_any_log(failed_study: FailedStudy) -> None:
    pods = [p["metadata"]["name"] for p in failed_study.controller_pods + failed_study.trial_pods]
    assert set(pods) <= set(failed_study.logs)  # every pod's log was read
    assert any(failed_study.logs[p] for p in pods)
    assert_no_credentials({p: failed_study.logs[p] for p in pods}, failed_study.tokens)


@pytest.mark.cluster
@pytest.mark.slow
def test_the_controller_token_reads_no_secret_and_stays_in_its_namespace(
    failed_study: FailedStudy, control_plane: ControlPlane
) -> None:
    # The very token the controller pod was given, not an impersonation of its account.
    [token] = failed_study.tokens
    ns = failed_study.namespace
    asked = {
        "list its trial pods": ("GET", f"/api/v1/namespaces/{ns}/pods"),
        "list secrets": ("GET", f"/api/v1/namespaces/{ns}/secrets"),
        "list secrets elsewhere": ("GET", "/api/v1/namespaces/kube-system/secrets"),
        "list jobs elsewhere": ("GET", "/apis/batch/v1/namespaces/default/jobs"),
        "create a job elsewhere": ("POST", "/apis/batch/v1/namespaces/default/jobs"),
        "list pods elsewhere": ("GET", "/api/v1/namespaces/default/pods"),
        "list nodes": ("GET", "/api/v1/nodes"),
        "list namespaces": ("GET", "/api/v1/namespaces"),
    }
    answers = {what: cl.status_with_token(control_plane, token, *call) for what, call in asked.items()}
    assert answers == {what: 200 if what == "list its trial pods" else 403 for what in asked}


@pytest.mark.cluster
@pytest.mark.slow
def test_controller_and_trial_pods_run_under_restricted_pod_security(
    failed_study: FailedStudy, control_plane: ControlPlane
) -> None:
    rest = Rest(control_plane.kubeconfig)
    ns = failed_study.namespace
    labels = rest.get(f"/api/v1/namespaces/{ns}")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    # Admitted, and they ran: the kubelet ran a pod for the controller and for trials 1-11
    # (trial 0's pod was admitted too: the scheduler's reason for it is in its record).
    ran = {name.rsplit("-", 1)[0] for name in failed_study.logs}
    assert {"rel-kubetune-controller", *(f"{STUDY}-{i:06d}" for i in range(1, 12))} <= ran
    for pod in failed_study.controller_pods + failed_study.trial_pods:  # those not deleted since
        [status] = pod["status"]["containerStatuses"]
        assert "terminated" in status["state"], pod["metadata"]["name"]
    # Trials talk to the bucket, never to the API: no token is mounted into them.
    for pod in failed_study.trial_pods:
        assert pod["spec"]["automountServiceAccountToken"] is False
        assert not [v for v in pod["spec"]["volumes"] if v["name"].startswith("kube-api-access")]
    # The namespace does enforce it: a pod without the restricted settings is refused.
    loose = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "loose"},
             "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["true"]}]}}  # fmt: skip
    with pytest.raises(ApiError) as refused:
        rest.post(f"/api/v1/namespaces/{ns}/pods", loose)
    assert refused.value.status == 403 and "violates PodSecurity" in refused.value.body
    rest.close()


@pytest.mark.cluster
@pytest.mark.slow
def test_a_node_selector_no_node_has_fails_the_trial_then_the_study(rig: cl.Rig, bucket: str) -> None:
    # The kubelet runs the controller; the trial never gets a node.
    rest, namespace = rig.rest, rig.namespace
    store = f"gs://{bucket}/nowhere"
    study = {"name": "nowhere", "budget": {"max_trials": 3, "parallel": 1, "max_failed": 1, "max_retries": 0}}
    # The test node has a T4, no H100.
    rig.install(store, study, {}, trial={"pendingTimeoutSeconds": 3},
                nodeSelector={"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"})  # fmt: skip
    job = rig.wait_controller_finished(timeout_s=120)

    [failed] = [c for c in job["status"]["conditions"] if c["type"] == "Failed"]
    assert failed["reason"] == "PodFailurePolicy"
    _, history = read_study(open_store(store))
    [result] = history.ordered_results()
    assert not result.succeeded
    unmatched = "1 node(s) didn't match Pod's node affinity/selector"
    assert (result.reason or "").startswith(f"not scheduled within 3 s: 0/1 nodes are available: {unmatched}")
    events = cl.items(rest, f"/api/v1/namespaces/{namespace}/events")
    study_failed = [e for e in events if e["reason"] == "StudyFailed"]
    # On the controller Job and on the Study the chart made, for `kubectl describe` of either.
    assert sorted(e["involvedObject"]["kind"] for e in study_failed) == ["Job", "Study"]
    assert {e["message"] for e in study_failed} == {
        "study failed: 0 trials succeeded, 1 failed; no trial succeeded"
    }
    assert json.loads(open_store(store).get("best.json"))["best"] is None
    assert cl.items(rest, f"/apis/batch/v1/namespaces/{namespace}/jobs", cl.TRIAL) == []  # deleted


@pytest.mark.cluster
@pytest.mark.slow
def test_a_trial_past_its_memory_limit_is_oom_killed_by_the_kernel(rig: cl.Rig, bucket: str) -> None:
    store = f"gs://{bucket}/oom"
    study = {"name": "oom", "budget": {"max_trials": 1, "parallel": 1, "max_failed": 1}}
    rig.install(store, study, {"default": {"oom": True}})  # chart_values: a 256Mi limit
    rig.wait_controller_finished(timeout_s=180)
    _, history = read_study(open_store(store))
    [result] = history.ordered_results()
    assert not result.succeeded
    assert "killed by SIGKILL (exit 137" in (result.reason or "") and "(OOMKilled)" in (result.reason or "")


@pytest.mark.cluster
@pytest.mark.slow
def test_an_image_that_does_not_exist_fails_the_trial_with_the_pull_error(rig: cl.Rig, bucket: str) -> None:
    store = f"gs://{bucket}/ghost"
    # A pull error is the infrastructure's: launched again once, then the trial's failure.
    budget = {"max_trials": 1, "parallel": 1, "max_failed": 1, "max_retries": 1, "retry_backoff_s": 0}
    missing = {"repository": "ghcr.io/kubetune/no-such-trial", "tag": "0", "pullPolicy": "IfNotPresent"}
    rig.install(store, {"name": "ghost", "budget": budget}, {}, trial={"pendingTimeoutSeconds": 15},
                trialImage=missing)  # fmt: skip
    rig.wait_controller_finished(timeout_s=240)
    _, history = read_study(open_store(store))
    [result] = history.ordered_results()
    reason = result.reason or ""
    assert reason.startswith("image could not be pulled (") and "127.0.0.1:5" in reason, reason
    assert "ErrImagePull" in reason or "ImagePullBackOff" in reason, reason
    lost = AttemptRecord.from_json(open_store(store).get(attempt_object(0, 0)))
    assert lost.cause == "image" and "127.0.0.1:5" in lost.reason


@pytest.mark.cluster
@pytest.mark.slow
def test_a_program_reporting_metrics_under_kubetunes_label_names_is_recorded_not_relaunched(
    rig: cl.Rig, bucket: str
) -> None:
    # Patched onto its Job, `study=7` took the Job out of the controller's watch: it was taken
    # for deleted and launched again while it still ran. Now the metric is recorded, not labelled.
    store = f"gs://{bucket}/labels"
    report = "echo kubetune: epoch={epoch} study=7 status=1 attempt=9 score={x}"
    command = f"sh -c '{report.format(epoch=1, x='{x}')}; sleep 12; {report.format(epoch=2, x='{x}')}'"
    study = {
        "name": "labels",
        "objective": {"metric": "score", "goal": "minimize"},
        "space": [{"name": "x", "type": "real", "low": 0, "high": 1}],
        "budget": {"max_trials": 2, "parallel": 2, "max_failed": 1},
        "trial": {"kind": "program", "command": command, "image": rig.bed.controller_image},
    }
    with rig.recorder() as recorder:
        rig.install(store, study, {})
        job = rig.wait_controller_finished(timeout_s=240)
    assert {c["type"] for c in job["status"]["conditions"] if c["status"] == "True"} >= {"Complete"}
    _, history = read_study(open_store(store))
    results = history.ordered_results()
    assert [r.status for r in results] == ["succeeded"] * 2, [r.reason for r in results]
    assert all(r.metrics["study"] == 7 and r.metrics["attempt"] == 9 for r in results)
    assert history.lost == {}  # nothing taken for a loss
    trial_jobs = {n: uids for n, uids in recorder.added().items() if n.startswith("labels-0")}
    assert sorted(trial_jobs) == ["labels-000000", "labels-000001"]  # no -r1: none launched again
    assert all(len(uids) == 1 for uids in trial_jobs.values())
    for item in cl.items(rig.rest, f"/apis/batch/v1/namespaces/{rig.namespace}/jobs", cl.TRIAL):
        labels = item["metadata"]["labels"]
        assert (labels["kubetune.dev/study"], labels["kubetune.dev/status"]) == ("labels", "succeeded")
        assert labels["kubetune.dev/attempt"] == "0" and labels["kubetune.dev/epoch"] == "2"
