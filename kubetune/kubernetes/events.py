"""Events on the controller's Job: what `kubectl describe job` shows of a study."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubetune.kubernetes.api import Obj, api_reason
from kubetune.log import get_logger

log = get_logger("kubetune.kubernetes.events")
COMPONENT = "kubetune-controller"


def post_event(core: client.CoreV1Api, job: Obj, reason: str, message: str, *, warning: bool = False) -> None:
    """One core/v1 Event about ``job``. Decoration: a refused Event is logged, never raised."""
    meta = job["metadata"]
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    body: Any = {
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
        },
        "reason": reason,
        "message": message[:1024],
        "type": "Warning" if warning else "Normal",
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
        "source": {"component": COMPONENT},
    }
    try:
        core.create_namespaced_event(meta["namespace"], body)
    except ApiException as exc:
        log.warning("event_failed", reason=api_reason(exc))
