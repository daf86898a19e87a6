"""The Job builder, read without a cluster (tests/cluster/ runs these Jobs for real)."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from kubetune.contract import ATTEMPT_ENV, TrialRequest, parse_trial_args
from kubetune.errors import UsageError
from kubetune.kinds import CNN, CnnSettings
from kubetune.kubernetes.job import JobSettings, build_job, job_name, label_value, value_labels

REQ = TrialRequest(
    store="gs://bucket/studies/fm",
    study="fashion-mnist",
    index=7,
    params={"learning_rate": 0.00775, "num_dense_layers": 1, "num_dense_nodes": 296},
    settings=CnnSettings(epochs=3, train_subset=2048, precision="mixed_float16"),
    objective="val_accuracy",
)
OWNER = {"metadata": {"name": "fm-controller", "uid": "1234", "labels": {"app.kubernetes.io/instance": "fm"}}}
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def test_job_name_is_deterministic_and_dns_safe() -> None:
    assert job_name("fashion-mnist", 7) == "fashion-mnist-000007"
    longest = job_name("a" * 40, 999_999)
    assert len(longest) <= 63 and DNS_LABEL.match(longest)


@pytest.mark.parametrize("value", [0.00775, 1e-05, -0.5, 296, "relu", "a b/c", 1e300, "x" * 80])
def test_label_values_are_valid(value: float | int | str) -> None:
    text = label_value(value)
    assert len(text) <= 63 and LABEL_VALUE.match(text), text


def test_job_runs_the_trial_command_line_on_a_gpu() -> None:
    settings = JobSettings(
        image="trial:1", gpus=2, tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists"}]
    )
    job = build_job(REQ, settings, namespace="ns", owner=OWNER)
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][:2] == ["kubetune", "trial"]
    assert parse_trial_args(container["command"][2:], CNN) == REQ  # the contract, round-tripped
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert job["spec"]["template"]["spec"]["tolerations"] == settings.tolerations
    assert job["spec"]["backoffLimit"] == 0


def test_job_labels_make_a_leaderboard_and_point_to_the_owner() -> None:
    job = build_job(REQ, JobSettings(), namespace="ns", owner=OWNER)
    labels = job["metadata"]["labels"]
    assert labels["kubetune.dev/study"] == "fashion-mnist"
    assert labels["kubetune.dev/trial"] == "7"
    assert labels["kubetune.dev/learning_rate"] == "0.00775"
    assert labels["app.kubernetes.io/instance"] == "fm"
    assert job["metadata"]["ownerReferences"] == [
        {"apiVersion": "batch/v1", "kind": "Job", "name": "fm-controller", "uid": "1234"}
    ]
    pod_labels = job["spec"]["template"]["metadata"]["labels"]
    assert pod_labels["kubetune.dev/study"] == "fashion-mnist" and pod_labels["kubetune.dev/trial"] == "7"
    assert pod_labels["app.kubernetes.io/instance"] == "fm"  # `kubectl get pods -l ...instance=` finds trials


def test_trial_pods_meet_the_restricted_pod_security_standard() -> None:
    pod = build_job(REQ, JobSettings(), namespace="ns")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    sc = pod["containers"][0]["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}


def test_trial_security_contexts_come_from_the_settings() -> None:
    pod_sc = {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "Localhost"}}
    container_sc = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL", "NET_RAW"]}}
    settings = JobSettings(podSecurityContext=pod_sc, securityContext=container_sc)
    pod = build_job(REQ, settings, namespace="ns")["spec"]["template"]["spec"]
    assert pod["securityContext"] == pod_sc
    assert pod["containers"][0]["securityContext"] == container_sc


def test_cpu_clusters_request_no_gpu() -> None:
    pod = build_job(REQ, JobSettings(gpus=0), namespace="ns")["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in pod["containers"][0]["resources"].get("limits", {})


def test_job_settings_load_and_reject_unknown_keys(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text("image: t:1\ngpus: 0\npendingTimeoutSeconds: 30\n")
    assert JobSettings.load(path) == JobSettings(image="t:1", gpus=0, pendingTimeoutSeconds=30)
    path.write_text("gpu: 1\n")
    with pytest.raises(UsageError, match="gpu: unknown job setting"):
        JobSettings.load(path)
    path.write_text("gpus: -1\n")
    with pytest.raises(UsageError, match="gpus: must be an integer >= 0"):
        JobSettings.load(path)


def test_the_users_labels_annotations_priority_and_queue_reach_the_job_and_its_pod() -> None:
    settings = JobSettings(
        jobLabels={"team": "vision", "example.com/cost-center": "ml-42"},
        jobAnnotations={"example.com/owner": "ana@example.com", "notes": "a free text: anything"},
        podLabels={"sidecar.istio.io/inject": "false"},
        podAnnotations={"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"},
        priorityClassName="batch-low",
        kueueQueueName="gpu-queue",
        kueuePriorityClass="low",
    )
    job = build_job(REQ, settings, namespace="ns", owner=OWNER)
    labels = job["metadata"]["labels"]
    assert {k: labels[k] for k in settings.jobLabels} == settings.jobLabels
    assert labels["kueue.x-k8s.io/queue-name"] == "gpu-queue"
    assert labels["kueue.x-k8s.io/priority-class"] == "low"
    assert labels["kubetune.dev/study"] == "fashion-mnist" and labels["kubetune.dev/trial"] == "7"
    annotations = job["metadata"]["annotations"]
    assert annotations["example.com/owner"] == "ana@example.com" and "kubetune.dev/params" in annotations
    template = job["spec"]["template"]
    assert template["metadata"]["labels"]["sidecar.istio.io/inject"] == "false"
    assert template["metadata"]["labels"]["kubetune.dev/trial"] == "7"
    assert "kueue.x-k8s.io/queue-name" not in template["metadata"]["labels"]  # Kueue reads the Job's
    assert template["metadata"]["annotations"] == settings.podAnnotations
    assert template["spec"]["priorityClassName"] == "batch-low"
    assert job["spec"]["suspend"] is True  # Kueue unsuspends it when its ClusterQueue admits it
    assert labels["kubetune.dev/status"] == "queued"  # the controller says running once it is admitted
    # Kueue takes a Job owned by another Job as its child, admitted with the parent's Workload,
    # unless the reference leaves out `controller: true`: each trial must be a Workload of its own.
    [ref] = job["metadata"]["ownerReferences"]
    assert "controller" not in ref


def test_without_user_metadata_a_job_carries_kubetunes_alone() -> None:
    job = build_job(REQ, JobSettings(), namespace="ns")
    assert not any(k.startswith("kueue.x-k8s.io/") for k in job["metadata"]["labels"])
    assert list(job["metadata"]["annotations"]) == ["kubetune.dev/params"]
    assert "annotations" not in job["spec"]["template"]["metadata"]
    assert "priorityClassName" not in job["spec"]["template"]["spec"]
    assert "suspend" not in job["spec"]


OWN = "keys are kubetune's own"
BAD_METADATA = [
    ("jobLabels: {kubetune.dev/study: other}", rf"jobLabels\.kubetune\.dev/study: kubetune\.dev/ {OWN}"),
    ("podLabels: {app.kubernetes.io/name: x}", rf"podLabels\.app\.kubernetes\.io/name: app\.kub\S+ {OWN}"),
    ("jobAnnotations: {kubetune.dev/params: '{}'}", rf"jobAnnotations\.kubetune\.dev/params: \S+ {OWN}"),
    ("jobLabels: {kueue.x-k8s.io/queue-name: q}", r"queue-name: set it with kueueQueueName"),
    ("jobLabels: {team: 3}", r"jobLabels\.team: must be a string, got int \(quote it in YAML\)"),
    ("jobLabels: {team: 'two words'}", r"jobLabels\.team: 'two words' is not a label value"),
    ("podLabels: {'-team': x}", r"podLabels\.-team: is not a label name"),
    ("jobLabels: {Example.com/team: x}", r"jobLabels\.Example\.com/team: the prefix before '/' is not a DNS"),
    ("podAnnotations: [a, b]", r"podAnnotations: must be a mapping of names to strings, got list"),
    ("kueueQueueName: 'gpu queue'", r"kueueQueueName: 'gpu queue' is not a label value"),
]  # fmt: skip


@pytest.mark.parametrize(("yaml_text", "message"), BAD_METADATA)
def test_job_settings_refuse_metadata_that_is_not_the_users_to_set(
    tmp_path: Path, yaml_text: str, message: str
) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(yaml_text + "\n")
    with pytest.raises(UsageError, match=message):
        JobSettings.load(path)


def test_a_metric_or_parameter_under_kubetunes_own_label_name_is_never_put_on_a_job() -> None:
    values = {"study": 1.0, "status": 0.5, "val_loss": 0.3, "lr_": 0.1, "a" * 64: 2.0, "x.y": 3.0, "lr": 0.9}
    assert value_labels(values, taken=["lr"]) == {"kubetune.dev/val_loss": "0.3", "kubetune.dev/x.y": "3"}


def test_a_trial_knows_its_attempt_from_its_environment() -> None:
    job = build_job(replace(REQ, attempt=2), JobSettings(), namespace="ns")
    env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env[ATTEMPT_ENV] == "2"
