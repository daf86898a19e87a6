"""The chart's render against the real test apiserver: schema validation of every
field, Pod Security (restricted) admission, and what the chart's RBAC allows."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from ._proc import wait_for
from .controlplane import ControlPlane
from .fixtures import Kubectl

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "kubetune"
CUSTOM = REPO / "tests" / "data" / "values-custom.yaml"
STORE = "gs://kubetune-test/studies/fmnist"
RELEASE = "tune"
VALUES = {"default": ["--set", f"store={STORE}"], "custom": ["-f", str(CUSTOM)]}


def render(assets: Path, namespace: str, *args: str) -> str:
    proc = subprocess.run(
        [str(assets / "helm"), "template", RELEASE, str(CHART), "--namespace", namespace, *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    [doc] = [d for d in docs if d["kind"] == kind]
    return doc


def warn_restricted(kubectl: Kubectl, namespace: str) -> None:
    # The namespace enforces restricted on pods; Jobs' pod templates are only
    # checked in warn/audit mode, so ask for warnings too.
    kubectl(
        "label", "namespace", namespace, "--overwrite",
        "pod-security.kubernetes.io/warn=restricted", "pod-security.kubernetes.io/warn-version=latest",
    )  # fmt: skip


@pytest.mark.parametrize("values", list(VALUES))
def test_render_passes_server_side_dry_run(
    cluster_assets: Path, kubectl: Kubectl, namespace: str, values: str
) -> None:
    warn_restricted(kubectl, namespace)
    manifest = render(cluster_assets, namespace, *VALUES[values])
    docs = [d for d in yaml.safe_load_all(manifest) if d]
    # ServiceAccount admission looks the test pod's account up for real: create it first.
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump(one(docs, "ServiceAccount")))
    proc = kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", stdin=manifest)
    kinds = sorted(d["kind"] for d in docs)
    assert proc.stdout.count("(server dry run)") == len(kinds) == 6, proc.stdout
    assert "Warning" not in proc.stderr, proc.stderr  # PodSecurity warnings on the Job template


def test_dry_run_catches_a_pod_security_regression(
    cluster_assets: Path, kubectl: Kubectl, namespace: str
) -> None:
    # The check above has teeth: loosen one field and the apiserver objects.
    warn_restricted(kubectl, namespace)
    manifest = render(
        cluster_assets,
        namespace,
        *VALUES["default"],
        "--set",
        "containerSecurityContext.allowPrivilegeEscalation=true",
    )
    docs = [d for d in yaml.safe_load_all(manifest) if d]
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump(one(docs, "ServiceAccount")))
    proc = kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", stdin=manifest, check=False)
    assert proc.returncode != 0
    assert "job.batch/tune-kubetune-controller" in proc.stdout
    assert "would violate PodSecurity" in proc.stderr  # the Job's template: warned
    assert "violates PodSecurity" in proc.stderr  # the test pod: refused


def test_manifests_pass_server_side_dry_run(kubectl: Kubectl, namespace: str) -> None:
    warn_restricted(kubectl, namespace)
    text = (
        (REPO / "manifests" / "kubetune.yaml")
        .read_text()
        .replace("namespace: kubetune", f"namespace: {namespace}")
    )
    proc = kubectl("apply", "--dry-run=server", "-f", "-", stdin=text)
    assert proc.stdout.count("(server dry run)") == 5, proc.stdout
    assert "Warning" not in proc.stderr, proc.stderr


def can_i(kubectl: Kubectl, user: str, verb: str, resource: str, namespace: str) -> bool:
    # "pods/log" means the subresource here; kubectl would read it as TYPE/NAME.
    resource, _, sub = resource.partition("/")
    extra = [f"--subresource={sub}"] if sub else []
    proc = kubectl("auth", "can-i", verb, resource, *extra, "-n", namespace, "--as", user, check=False)
    assert proc.stdout.strip() in ("yes", "no"), proc.stdout + proc.stderr
    return proc.stdout.strip() == "yes"


def test_rbac_grants_the_controller_exactly_its_work(
    cluster_assets: Path, kubectl: Kubectl, namespace: str
) -> None:
    docs = [d for d in yaml.safe_load_all(render(cluster_assets, namespace, *VALUES["custom"])) if d]
    rbac = [d for d in docs if d["kind"] in ("ServiceAccount", "Role", "RoleBinding")]
    kubectl("apply", "-f", "-", stdin="\n---\n".join(yaml.safe_dump(d) for d in rbac))
    user = f"system:serviceaccount:{namespace}:tuner"
    allowed = [
        ("create", "jobs.batch"), ("get", "jobs.batch"), ("list", "jobs.batch"), ("watch", "jobs.batch"),
        ("patch", "jobs.batch"), ("delete", "jobs.batch"),
        ("get", "pods"), ("list", "pods"), ("watch", "pods"),
        ("create", "events"), ("patch", "events"), ("create", "events.events.k8s.io"),
        ("get", "leases.coordination.k8s.io"), ("create", "leases.coordination.k8s.io"),
        ("update", "leases.coordination.k8s.io"),
    ]  # fmt: skip
    denied = [
        ("get", "secrets"), ("list", "secrets"), ("create", "pods"), ("delete", "pods"),
        ("get", "pods/log"), ("create", "pods/exec"), ("update", "jobs.batch"), ("create", "configmaps"),
        ("delete", "leases.coordination.k8s.io"), ("create", "roles.rbac.authorization.k8s.io"),
        ("create", "serviceaccounts/token"),
    ]  # fmt: skip
    wrong = [f"{v} {r}: expected yes" for v, r in allowed if not can_i(kubectl, user, v, r, namespace)]
    wrong += [f"{v} {r}: expected no" for v, r in denied if can_i(kubectl, user, v, r, namespace)]
    # Nothing outside its namespace: not one of its own rights, and no Secret anywhere.
    wrong += [
        f"{v} {r} in {other}"
        for other in ("default", "kube-system")
        for v, r in [*allowed, ("get", "secrets"), ("list", "secrets"), ("watch", "secrets")]
        if can_i(kubectl, user, v, r, other)
    ]
    # Nothing cluster-scoped.
    cluster_wide = [
        ("list", "nodes"), ("list", "namespaces"), ("list", "secrets"), ("create", "namespaces"),
        ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
        ("create", "certificatesigningrequests.certificates.k8s.io"),
    ]  # fmt: skip
    for verb, resource in cluster_wide:
        proc = kubectl("auth", "can-i", verb, resource, "--all-namespaces", "--as", user, check=False)
        assert "doesn't have a resource type" not in proc.stderr, proc.stderr  # a real resource
        if proc.stdout.strip() != "no":
            wrong.append(f"{verb} {resource} cluster-wide")
    assert wrong == []


def test_controller_pod_is_admitted_and_labelled_with_its_job(
    cluster_assets: Path, control_plane: ControlPlane, kubectl: Kubectl, namespace: str
) -> None:
    # Applied for real (the pod is created under enforce=restricted), but pinned
    # to a node that does not exist, so no kubelet ever runs it.
    manifest = render(
        cluster_assets, namespace, *VALUES["custom"], "--skip-tests",
        "--set-json", "controller.nodeSelector=" + json.dumps({"kubetune.dev/test": "never"}),
    )  # fmt: skip
    kubectl("apply", "-n", namespace, "-f", "-", stdin=manifest)
    core = client.CoreV1Api(control_plane.api_client)
    job_name = f"{RELEASE}-kubetune-controller"

    def controller_pod() -> client.V1Pod | None:
        pods = core.list_namespaced_pod(
            namespace, label_selector=f"app.kubernetes.io/instance={RELEASE}"
        ).items
        return pods[0] if pods else None

    pod = wait_for("the controller pod", controller_pod, 60)
    # KUBETUNE_OWNER_JOB reads this label through the downward API.
    labels = pod.metadata.labels if pod.metadata and pod.metadata.labels else {}
    assert labels["batch.kubernetes.io/job-name"] == job_name
    assert labels["kubetune.dev/study"] == "fmnist-small"
    jobs = kubectl(
        "get", "jobs", "-n", namespace, "-l", f"app.kubernetes.io/instance={RELEASE}", "-o", "name"
    )
    assert jobs.stdout.split() == [f"job.batch/{job_name}"]


@pytest.mark.parametrize("values_file", sorted((CHART / "ci").glob("*-values.yaml")), ids=lambda p: p.name)
def test_helm_lint_passes_with_the_chart_testing_values(cluster_assets: Path, values_file: Path) -> None:
    # The chart as shipped; ci/*-values.yaml give the one required value (store).
    proc = subprocess.run(
        [str(cluster_assets / "helm"), "lint", "--strict", str(CHART), "-f", str(values_file)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
