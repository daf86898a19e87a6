"""Manifest builders and bounded waits for tests that run on the test cluster."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from tests.polling import wait_for

Json = dict[str, Any]

GPU_TOLERATION: Json = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
RESTRICTED_POD_SECURITY: Json = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
RESTRICTED_CONTAINER_SECURITY: Json = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def gpu_container(command: list[str], image: str, name: str = "trial", gpus: int = 1) -> Json:
    """A restricted-PSS-compliant container asking for GPUs, running an image
    the node already holds."""
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": command,
        "resources": {"limits": {"nvidia.com/gpu": str(gpus)}},
        "securityContext": RESTRICTED_CONTAINER_SECURITY,
    }


def gpu_pod_spec(
    command: list[str], image: str, *, restart_policy: str = "Never", service_account: str | None = None
) -> Json:
    spec: Json = {
        "restartPolicy": restart_policy,
        "nodeSelector": {"nvidia.com/gpu.present": "true"},
        "tolerations": [GPU_TOLERATION],
        "terminationGracePeriodSeconds": 5,
        "securityContext": RESTRICTED_POD_SECURITY,
        "containers": [gpu_container(command, image)],
    }
    if service_account:
        spec["serviceAccountName"] = service_account
    return spec


def pod_manifest(name: str, spec: Json, labels: dict[str, str] | None = None) -> client.V1Pod:
    return client.V1Pod.model_validate(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}}, "spec": spec}
    )


def job_manifest(name: str, spec: Json, *, backoff_limit: int = 0) -> client.V1Job:
    return client.V1Job.model_validate(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name},
            "spec": {"backoffLimit": backoff_limit, "template": {"spec": spec}},
        }
    )


def job_condition(batch: client.BatchV1Api, namespace: str, name: str) -> str | None:
    """'Complete' or 'Failed' once the Job has that condition True, else None."""
    job = batch.read_namespaced_job_status(name, namespace)
    for cond in job.status.conditions if job.status and job.status.conditions else []:
        if cond.type in ("Complete", "Failed") and cond.status == "True":
            return str(cond.type)
    return None


def wait_job_finished(batch: client.BatchV1Api, namespace: str, name: str, timeout_s: float = 180) -> str:
    return wait_for(
        f"job {namespace}/{name} to finish",
        lambda: job_condition(batch, namespace, name),
        timeout_s,
        interval_s=0.5,
    )


def job_pods(core: client.CoreV1Api, namespace: str, job_name: str) -> list[client.V1Pod]:
    selector = f"batch.kubernetes.io/job-name={job_name}"
    return list(core.list_namespaced_pod(namespace, label_selector=selector).items)


def pod_phase(core: client.CoreV1Api, namespace: str, name: str) -> str:
    pod = core.read_namespaced_pod_status(name, namespace)
    return str(pod.status.phase) if pod.status else "Unknown"


def wait_pod_phase(
    core: client.CoreV1Api, namespace: str, name: str, phases: tuple[str, ...], timeout_s: float = 180
) -> str:
    def probe() -> str | None:
        phase = pod_phase(core, namespace, name)
        return phase if phase in phases else None

    return wait_for(f"pod {namespace}/{name} in {phases}", probe, timeout_s, interval_s=0.25)


def name_of(pod: client.V1Pod) -> str:
    assert pod.metadata is not None and pod.metadata.name is not None
    return str(pod.metadata.name)


def phase_of(pod: client.V1Pod) -> str:
    return str(pod.status.phase) if pod.status and pod.status.phase else "Unknown"


def terminated_exit_code(pod: client.V1Pod) -> int | None:
    statuses = pod.status.container_statuses if pod.status else None
    if not statuses or not statuses[0].state or not statuses[0].state.terminated:
        return None
    return int(statuses[0].state.terminated.exit_code)
