"""The API connection a controller pod (or a kubeconfig user) has, and reading its answers."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from kubetune.errors import KubetuneError

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
Obj = dict[str, Any]


def api_client() -> client.ApiClient:
    """In-cluster credentials inside a pod; the kubeconfig elsewhere."""
    try:
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config()
        else:
            config.load_kube_config()
    except config.ConfigException as exc:
        raise KubetuneError(f"kubernetes: no usable credentials ({exc})") from None
    return client.ApiClient()


def own_namespace() -> str:
    ns = os.environ.get("KUBETUNE_NAMESPACE")
    if ns:
        return ns
    path = SA_DIR / "namespace"
    return path.read_text().strip() if path.exists() else "default"


def context_namespace() -> str:
    """The namespace a kubectl user works in: their kubeconfig context's, else the pod's, else default."""
    try:
        _, active = config.list_kube_config_contexts()
    except config.ConfigException:
        return own_namespace()
    return str(active.get("context", {}).get("namespace") or own_namespace())


def read_job(batch: client.BatchV1Api, namespace: str, name: str) -> Obj | None:
    """The Job as plain JSON, None if it does not exist."""
    try:
        resp: Any = batch.read_namespaced_job(name, namespace, _preload_content=False)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise KubetuneError(f"kubernetes: cannot read Job {name}: {api_reason(exc)}") from None
    job: Obj = json.loads(resp.data)
    return job


def owner_job(api: client.ApiClient, namespace: str, name: str | None) -> Obj | None:
    """The controller's own Job (``KUBETUNE_OWNER_JOB``), which owns the trial Jobs and carries the Events."""
    if not name:
        return None
    job = read_job(client.BatchV1Api(api), namespace, name)
    if job is None:
        raise KubetuneError(f"kubernetes: owner Job {namespace}/{name} not found")
    return job


def reference(obj: Obj) -> Obj:
    """Who ``obj`` is, as an owner reference (and, with its namespace, an Event's object) names it."""
    meta = obj["metadata"]
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": meta["name"], "uid": meta["uid"]}


def api_reason(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "")["message"])
    except (TypeError, ValueError, KeyError):
        return f"HTTP {exc.status} {exc.reason}"
