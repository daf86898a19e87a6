"""The Study's status, patched at most every EVERY_S, and at once when a trial or the study ends.

Decoration, like the Job observer: the store holds the truth, so a refused
patch is logged and the status tried again when next due, never a reason to
stop a study. The rate keeps a study of many short trials from writing its
object (and waking every watcher of it) on each epoch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubetune.crd import GROUP, PLURAL, VERSION
from kubetune.kubernetes.api import api_reason
from kubetune.log import get_logger

log = get_logger("kubetune.kubernetes.status_writer")

EVERY_S = 5.0
Status = dict[str, Any]
Patch = Callable[[Status], None]


def study_patch(api: client.ApiClient, namespace: str, name: str) -> Patch:
    """Patch the ``status`` subresource of Study ``namespace/name`` (a JSON merge patch)."""
    custom = client.CustomObjectsApi(api)

    def patch(status: Status) -> None:
        custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name, {"status": status}
        )

    return patch


class StatusWriter:
    def __init__(self, patch: Patch, clock: Callable[[], float], every_s: float = EVERY_S) -> None:
        self.patch = patch
        self.clock = clock  # monotonic seconds
        self.every_s = every_s
        self.written: Status | None = None
        self.pending: Status | None = None  # the newest status not written yet
        self.at: float | None = None  # when the last patch was tried

    def offer(self, status: Status, *, now: bool = False) -> None:
        """Write ``status`` if it is new and due, or ``now`` (a trial or the study ended); else hold it."""
        self.pending = None if status == self.written else status
        if now:
            self._write()
        else:
            self.flush()

    def due(self) -> bool:
        """Whether a status offered now would be written: none tried yet, or the interval is over."""
        return self.at is None or self.clock() - self.at >= self.every_s

    def flush(self) -> None:
        """Write the held status once due: call it every turn of the loop."""
        if self.due():
            self._write()

    def _write(self) -> None:
        if self.pending is None:
            return
        self.at = self.clock()
        try:
            self.patch(self.pending)
        except ApiException as exc:
            log.warning("status_patch_failed", reason=api_reason(exc))
            return
        self.written, self.pending = self.pending, None
