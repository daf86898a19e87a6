"""The study's Study object (kubetune.dev/v1alpha1): its status written live from the records.

Called as the study loop's progress hook, each turn: the status is derived
from the store's records alone (:mod:`kubetune.controller.resource`), so a
restarted controller writes what the one before it would have, and offered
to a :class:`~kubetune.kubernetes.status_writer.StatusWriter`, which writes
it at once when a trial has ended and otherwise at a bounded rate.
Decoration, as the Job observer is: a study whose Study object is missing or
unreadable (no CRD, no permission) runs as before, watched through its Jobs.
"""

from __future__ import annotations

import time
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubetune.controller.resource import study_status
from kubetune.controller.study import Study
from kubetune.crd import GROUP, PLURAL, VERSION
from kubetune.kubernetes.api import api_reason
from kubetune.kubernetes.status_writer import StatusWriter, study_patch
from kubetune.log import get_logger

log = get_logger("kubetune.kubernetes.study_resource")


Obj = dict[str, Any]


class StudyResource:
    def __init__(self, writer: StatusWriter, store: str, study: Obj) -> None:
        self.writer = writer
        self.store = store
        self.generation = int(study["metadata"].get("generation", 1))
        # The conditions it shows now: their transition times carry over a restart.
        self.conditions = list((study.get("status") or {}).get("conditions") or [])
        self._ended = -1  # trials ended when the status was last offered

    def __call__(self, study: Study) -> None:
        """Offer the study's status; at once when a trial has ended since the last offer."""
        ended = len(study.history.results)
        self._offer(study, now=ended != self._ended)
        self._ended = ended

    def ended(self, study: Study) -> None:
        """The study is over: its final status, written now."""
        self._offer(study, now=True)

    def _offer(self, study: Study, *, now: bool) -> None:
        status = study_status(study.spec, study.history, now=time.time(), store=self.store,
                              generation=self.generation, previous=self.conditions)  # fmt: skip
        self.conditions = status["conditions"]
        self.writer.offer(status, now=now)


def attach(api: client.ApiClient, namespace: str, name: str, store: str) -> StudyResource | None:
    """The Study ``namespace/name`` to write status to; None, logged, where it cannot be read."""
    try:
        found: Any = client.CustomObjectsApi(api).get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name
        )
    except ApiException as exc:
        log.warning("study_resource_unreadable", study=name, reason=api_reason(exc))
        return None
    return StudyResource(StatusWriter(study_patch(api, namespace, name), time.monotonic), store, found)
