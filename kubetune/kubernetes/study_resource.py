"""The study's Study object (kubetune.dev/v1alpha1): its status written live from the records.

Called as the study loop's progress hook, each turn: the status is derived
from the store's records alone (:mod:`kubetune.controller.resource`), so a
restarted controller writes what the one before it would have, and offered
to a :class:`~kubetune.kubernetes.status_writer.StatusWriter`, which writes
it at once when a trial has ended and otherwise at a bounded rate.
Decoration, as the Job observer is: a study whose Study object is missing or
unreadable (no CRD, no permission) runs as before, watched through its Jobs.

The Study owns the controller's Job, which owns the trial Jobs: ``kubectl
delete study`` removes them all, and the store keeps every record. Helm
cannot say so, as it renders the Job before the Study has a uid; the
controller adds the reference when it starts.

The object is also read back every few seconds: a new generation means a user
patched it (``kubectl patch study``), and its budget and confirmation phase,
the only fields its CRD lets change, are handed to the running study.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubetune.controller.resource import study_status
from kubetune.controller.study import Study
from kubetune.crd import GROUP, PLURAL, VERSION
from kubetune.errors import KubetuneError
from kubetune.kubernetes.api import api_reason, context_namespace, reference
from kubetune.kubernetes.status_writer import StatusWriter, study_patch
from kubetune.log import get_logger
from kubetune.spec import Spec, parse_spec

log = get_logger("kubetune.kubernetes.study_resource")


Obj = dict[str, Any]
READ_EVERY_S = 5.0


class StudyResource:
    def __init__(
        self,
        writer: StatusWriter,
        store: str,
        study: Obj,
        read: Callable[[], Obj],
        clock: Callable[[], float],
    ) -> None:
        self.writer = writer
        self.store = store
        self.read = read  # the object as the API holds it now
        self.clock = clock  # monotonic seconds
        self.object = study
        self.generation = int(study["metadata"].get("generation", 1))
        # The conditions it shows now: their transition times carry over a restart.
        self.conditions = list((study.get("status") or {}).get("conditions") or [])
        self._ended = -1  # trials ended when the status was last offered
        self._read_at = clock()

    def amended(self, spec: Spec) -> Spec:
        """``spec`` with the object's budget and confirmation phase, what kubectl may change on it:
        at start (a restarted controller keeps a patch) and on each new generation."""
        text = yaml.safe_dump({"name": spec.name, **self.object["spec"]})
        theirs = parse_spec(text, source=f"study {spec.name}")
        return replace(spec, budget=theirs.budget, confirm=theirs.confirm)

    def __call__(self, study: Study) -> None:
        """Follow a patch of the object; offer the study's status, at once when a trial has ended
        since the last offer."""
        self._follow(study)
        ended = len(study.history.results)
        self._offer(study, now=ended != self._ended)
        self._ended = ended

    def _follow(self, study: Study) -> None:
        if self.clock() - self._read_at < READ_EVERY_S:
            return
        self._read_at = self.clock()
        try:
            found = self.read()
        except ApiException as exc:
            log.warning("study_resource_unreadable", study=study.spec.name, reason=api_reason(exc))
            return
        generation = int(found["metadata"].get("generation", 1))
        if generation == self.generation:
            return
        self.object, self.generation = found, generation
        try:
            study.amend(self.amended(study.spec))
        except KubetuneError as exc:  # the CRD's rules let nothing else change; an older CRD might
            log.warning("study_patch_refused", study=study.spec.name, generation=generation, reason=str(exc))

    def ended(self, study: Study) -> None:
        """The study is over: its final status, written now."""
        self._offer(study, now=True)

    def _offer(self, study: Study, *, now: bool) -> None:
        if not now and not self.writer.due():
            return  # derived from every record: not each turn of the loop, only when it would be written
        status = study_status(study.spec, study.history, now=time.time(), store=self.store,
                              generation=self.generation, previous=self.conditions)  # fmt: skip
        self.conditions = status["conditions"]
        self.writer.offer(status, now=now)


def attach(api: client.ApiClient, namespace: str, name: str, store: str) -> StudyResource | None:
    """The Study ``namespace/name`` to follow and write status to; None, logged, where it cannot be read."""

    def read() -> Obj:
        return _get(api, namespace, name)

    try:
        found = read()
    except ApiException as exc:
        log.warning("study_resource_unreadable", study=name, reason=api_reason(exc))
        return None
    writer = StatusWriter(study_patch(api, namespace, name), time.monotonic)
    return StudyResource(writer, store, found, read, time.monotonic)


def own(api: client.ApiClient, job: Obj, study: Obj) -> None:
    """Make ``study`` an owner of the controller's ``job`` (once: a restarted controller finds it so)."""
    meta = job["metadata"]
    refs = list(meta.get("ownerReferences") or [])
    if any(r.get("uid") == study["metadata"]["uid"] for r in refs):
        return
    # No blockOwnerDeletion: setting it takes update on studies/finalizers, which the Role does not grant.
    patch = {"metadata": {"ownerReferences": [*refs, reference(study)]}}
    try:
        client.BatchV1Api(api).patch_namespaced_job(meta["name"], meta["namespace"], patch)
    except ApiException as exc:
        log.warning("study_owner_refused", job=meta["name"], reason=api_reason(exc))


def read_study(api: client.ApiClient, name: str, namespace: str | None) -> Obj:
    """The Study ``namespace/name`` (the kubeconfig's namespace by default), for ``kubetune status``."""
    namespace = namespace or context_namespace()
    try:
        return _get(api, namespace, name)
    except ApiException as exc:
        raise KubetuneError(f"study/{name} in namespace {namespace}: {api_reason(exc)}") from None


def _get(api: client.ApiClient, namespace: str, name: str) -> Obj:
    found: Any = client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name
    )
    return dict(found)
