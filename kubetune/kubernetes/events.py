"""Events on the controller's Job and the Study: what `kubectl describe` shows of a study."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubetune.kubernetes.api import Obj, api_reason, reference
from kubetune.log import get_logger

log = get_logger("kubetune.kubernetes.events")
COMPONENT = "kubetune-controller"


def post_event(
    core: client.CoreV1Api, about: Obj, reason: str, message: str, *, warning: bool = False
) -> None:
    """One core/v1 Event about the object ``about`` (as the API returned it, with its apiVersion and kind).
    Decoration: a refused Event is logged, never raised."""
    meta = about["metadata"]
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    body: Any = {
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {**reference(about), "namespace": meta["namespace"]},
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
