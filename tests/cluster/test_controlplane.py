"""The test control plane and its GPU node behave like a real cluster where
kubetune depends on it: version, RBAC, PodSecurity, Jobs, GPU capacity,
in-cluster config, garbage collection. Pods run the controller image (Python
and the kubernetes client) in real containers."""

from __future__ import annotations

import ipaddress
import json
import textwrap
import time
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.polling import wait_for

from .controlplane import ControlPlane
from .fixtures import Kubectl
from .helpers import (
    gpu_container,
    gpu_pod_spec,
    job_manifest,
    job_pods,
    name_of,
    phase_of,
    pod_manifest,
    terminated_exit_code,
    wait_job_finished,
    wait_pod_phase,
)
from .images import ProjectImages
from .node import Node

pytestmark = pytest.mark.cluster


@pytest.fixture
def image(node: Node, project_images: ProjectImages) -> str:
    """What the test pods run: the controller image (Python, the kubernetes client), on the node."""
    return project_images.controller


def test_apiserver_reports_built_version(control_plane: ControlPlane, kubectl: Kubectl) -> None:
    info = client.VersionApi(control_plane.api_client).get_code()
    assert info.git_version.startswith("v1.36.")
    assert (info.major, info.minor) == ("1", "36")
    out = json.loads(kubectl("version", "-o", "json").stdout)
    assert out["serverVersion"]["gitVersion"] == info.git_version


def test_fresh_serviceaccount_cannot_list_secrets(namespace: str, kubectl: Kubectl) -> None:
    kubectl("create", "serviceaccount", "sa", "-n", namespace)
    user = f"system:serviceaccount:{namespace}:sa"
    denied = kubectl("auth", "can-i", "list", "secrets", "-n", namespace, "--as", user, check=False)
    assert denied.stdout.strip() == "no"
    assert denied.returncode == 1
    allowed = kubectl("auth", "can-i", "list", "secrets", "-n", namespace)
    assert allowed.stdout.strip() == "yes"


def test_privileged_pod_rejected_by_restricted_pss(control_plane: ControlPlane, namespace: str) -> None:
    core = client.CoreV1Api(control_plane.api_client)
    spec = gpu_pod_spec(["python", "-c", "pass"], "kubetune/never-run:0")  # refused before any node
    spec["containers"][0]["securityContext"] = {"privileged": True}
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod(namespace, pod_manifest("privileged", spec))
    assert err.value.status == 403
    assert "violates PodSecurity" in str(err.value.body)


def test_job_completes_on_gpu_node(
    control_plane: ControlPlane, node: Node, image: str, namespace: str
) -> None:
    batch = client.BatchV1Api(control_plane.api_client)
    core = client.CoreV1Api(control_plane.api_client)
    spec = gpu_pod_spec(["python", "-c", "import sys; print('trial ok'); sys.exit(0)"], image)
    batch.create_namespaced_job(namespace, job_manifest("ok", spec))
    assert wait_job_finished(batch, namespace, "ok") == "Complete"
    (pod,) = job_pods(core, namespace, "ok")
    assert pod.spec is not None and pod.spec.node_name == node.name
    assert pod.status is not None and pod.status.phase == "Succeeded"
    assert terminated_exit_code(pod) == 0
    assert ipaddress.ip_address(pod.status.pod_ip or "") in node.network.subnet  # a bridge address
    assert "trial ok" in node.logs(namespace, name_of(pod))


def test_job_fails_with_container_exit_code(
    control_plane: ControlPlane, node: Node, image: str, namespace: str
) -> None:
    batch = client.BatchV1Api(control_plane.api_client)
    core = client.CoreV1Api(control_plane.api_client)
    spec = gpu_pod_spec(["python", "-c", "import sys; sys.exit(3)"], image)
    batch.create_namespaced_job(namespace, job_manifest("bad", spec, backoff_limit=0))
    assert wait_job_finished(batch, namespace, "bad") == "Failed"
    (pod,) = job_pods(core, namespace, "bad")
    assert pod.status is not None and pod.status.phase == "Failed"
    assert terminated_exit_code(pod) == 3
    state = pod.status.container_statuses[0].state  # type: ignore[index]
    assert state is not None and state.terminated is not None and state.terminated.reason == "Error"


def test_onfailure_restarts_in_place(
    control_plane: ControlPlane, node: Node, image: str, namespace: str
) -> None:
    """First run fails, the restart (same pod, emptyDir kept) succeeds."""
    batch = client.BatchV1Api(control_plane.api_client)
    core = client.CoreV1Api(control_plane.api_client)
    script = textwrap.dedent("""
        import os, sys
        marker = "/scratch/attempted"
        if os.path.exists(marker):
            sys.exit(0)
        open(marker, "w").close()
        sys.exit(1)
    """)
    spec = gpu_pod_spec(["python", "-c", script], image, restart_policy="OnFailure")
    spec["containers"][0]["volumeMounts"] = [{"name": "scratch", "mountPath": "/scratch"}]
    spec["volumes"] = [{"name": "scratch", "emptyDir": {}}]
    batch.create_namespaced_job(namespace, job_manifest("flaky", spec, backoff_limit=2))
    assert wait_job_finished(batch, namespace, "flaky") == "Complete"
    (pod,) = job_pods(core, namespace, "flaky")
    assert pod.status is not None and pod.status.container_statuses
    assert pod.status.container_statuses[0].restart_count == 1
    assert terminated_exit_code(pod) == 0


def _run_interval(log_text: str) -> tuple[float, float]:
    fields = dict(line.split("=", 1) for line in log_text.split() if "=" in line)
    return float(fields["start"]), float(fields["end"])


def test_gpu_capacity_serialises_pods(
    control_plane: ControlPlane, node: Node, image: str, namespace: str
) -> None:
    """With one GPU, the second GPU pod stays Pending until the first has finished."""
    core = client.CoreV1Api(control_plane.api_client)
    script = (
        "import time; print(f'start={time.time()}', flush=True); time.sleep(3); print(f'end={time.time()}')"
    )
    for name in ("gpu-a", "gpu-b"):
        core.create_namespaced_pod(
            namespace, pod_manifest(name, gpu_pod_spec(["python", "-c", script], image))
        )
    seen_one_pending_while_other_runs = False
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        phases = {name_of(p): phase_of(p) for p in core.list_namespaced_pod(namespace).items}
        assert list(phases.values()).count("Running") <= 1, phases
        if "Running" in phases.values() and "Pending" in phases.values():
            seen_one_pending_while_other_runs = True
        if all(phase == "Succeeded" for phase in phases.values()):
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"pods did not both succeed: {phases}")
    assert seen_one_pending_while_other_runs
    (a_start, a_end), (b_start, b_end) = (_run_interval(node.logs(namespace, n)) for n in ("gpu-a", "gpu-b"))
    assert a_end <= b_start or b_end <= a_start, "GPU pods overlapped in time"


def test_incluster_config_inside_pod(
    control_plane: ControlPlane, node: Node, image: str, namespace: str
) -> None:
    """A pod's process reaches the API with its own ServiceAccount token and RBAC."""
    core = client.CoreV1Api(control_plane.api_client)
    rbac = client.RbacAuthorizationV1Api(control_plane.api_client)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount.model_validate({"metadata": {"name": "lister"}})
    )
    rbac.create_namespaced_role(
        namespace,
        client.V1Role.model_validate(
            {
                "metadata": {"name": "pod-lister"},
                "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
            }
        ),
    )
    rbac.create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding.model_validate(
            {
                "metadata": {"name": "pod-lister"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-lister"},
                "subjects": [{"kind": "ServiceAccount", "name": "lister", "namespace": namespace}],
            }
        ),
    )
    script = textwrap.dedent("""
        from kubernetes import client, config
        from kubernetes.client.exceptions import ApiException
        config.load_incluster_config()
        ns = open("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read()
        api = client.CoreV1Api()
        print("PODS", len(api.list_namespaced_pod(ns).items), flush=True)
        try:
            api.list_namespaced_secret(ns)
            print("SECRETS allowed")
        except ApiException as exc:
            print("SECRETS", exc.status)
    """)
    spec = gpu_pod_spec(["python", "-c", script], image, service_account="lister")
    core.create_namespaced_pod(namespace, pod_manifest("incluster", spec))
    phase = wait_pod_phase(core, namespace, "incluster", ("Succeeded", "Failed"))
    logs = node.logs(namespace, "incluster")
    assert phase == "Succeeded", logs
    assert "PODS 1" in logs
    assert "SECRETS 403" in logs


def test_pod_sees_configmap_volume_and_downward_env(
    control_plane: ControlPlane, node: Node, image: str, namespace: str
) -> None:
    core = client.CoreV1Api(control_plane.api_client)
    core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap.model_validate(
            {"metadata": {"name": "study"}, "data": {"spec.yaml": "trials: 4\n", "mode": "fast"}}
        ),
    )
    container = gpu_container(
        [
            "python",
            "-c",
            "import os; print(open('/etc/kubetune/spec.yaml').read().strip(), "
            "os.environ['POD_NAME'], os.environ['MODE'], os.environ['TRIAL'])",
        ],
        image,
    )
    container["volumeMounts"] = [{"name": "study", "mountPath": "/etc/kubetune", "readOnly": True}]
    container["env"] = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "study", "key": "mode"}}},
        {"name": "TRIAL", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['trial']"}}},
    ]
    spec = gpu_pod_spec([], image)
    spec["containers"] = [container]
    spec["volumes"] = [{"name": "study", "configMap": {"name": "study"}}]
    core.create_namespaced_pod(namespace, pod_manifest("reader", spec, labels={"trial": "7"}))
    phase = wait_pod_phase(core, namespace, "reader", ("Succeeded", "Failed"))
    logs = node.logs(namespace, "reader")
    assert phase == "Succeeded", logs
    assert "trials: 4 reader fast 7" in logs
    assert not Path("/etc/kubetune/spec.yaml").exists()  # the volume never shows on the host


def test_job_background_deletion_removes_running_pods(
    control_plane: ControlPlane, node: Node, image: str, namespace: str
) -> None:
    batch = client.BatchV1Api(control_plane.api_client)
    core = client.CoreV1Api(control_plane.api_client)
    spec = gpu_pod_spec(["python", "-c", "import time; time.sleep(600)"], image)
    batch.create_namespaced_job(namespace, job_manifest("long", spec))
    pod = wait_for("job pod", lambda: next(iter(job_pods(core, namespace, "long")), None), 60)
    name = name_of(pod)
    wait_pod_phase(core, namespace, name, ("Running",))
    batch.delete_namespaced_job("long", namespace, propagation_policy="Background")
    wait_for(
        "job pods to be garbage-collected", lambda: not job_pods(core, namespace, "long"), 120, interval_s=0.5
    )
    wait_for("the container to be gone", lambda: not node.pod_running(namespace, name), 30)


def test_deleted_pod_gets_sigterm_then_sigkill_after_its_grace_period(
    control_plane: ControlPlane, node: Node, image: str, namespace: str
) -> None:
    core = client.CoreV1Api(control_plane.api_client)
    script = textwrap.dedent("""
        import signal, time
        signal.signal(signal.SIGTERM, lambda *_: print("TERM", flush=True))
        print("up", flush=True)
        while True:
            time.sleep(0.1)
    """)
    spec = gpu_pod_spec(["python", "-c", script], image)
    spec["terminationGracePeriodSeconds"] = 4
    core.create_namespaced_pod(namespace, pod_manifest("stubborn", spec))
    wait_pod_phase(core, namespace, "stubborn", ("Running",))
    wait_for("process to start", lambda: "up" in node.logs(namespace, "stubborn"), 60)
    started = time.monotonic()
    core.delete_namespaced_pod("stubborn", namespace)
    # Read while the kubelet still has the log: it goes with the pod.
    wait_for("SIGTERM to reach the process", lambda: "TERM" in node.logs(namespace, "stubborn"), 10)
    wait_for("the container to be killed", lambda: not node.pod_running(namespace, "stubborn"), 60)
    elapsed = time.monotonic() - started
    assert 3.5 <= elapsed < 30, elapsed  # it ignored SIGTERM: SIGKILL after the grace period

    def gone() -> bool:
        try:
            core.read_namespaced_pod("stubborn", namespace)
        except ApiException as exc:
            return bool(exc.status == 404)
        return False

    wait_for("pod object to disappear", gone, 60)
