"""Trials as Kubernetes Jobs, followed through watches.

Job and pod changes arrive through two informers and feed the
:class:`~kubetune.kubernetes.tracker.Tracker`, which decides when a trial
ended and why. This class only talks to the API: it creates, adopts and
deletes trial Jobs.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubetune.contract import TrialRequest
from kubetune.errors import KubetuneError
from kubetune.kubernetes.api import Obj, api_reason, read_job
from kubetune.kubernetes.informer import Informer
from kubetune.kubernetes.job import STUDY_LABEL, JobSettings, build_job, job_name
from kubetune.kubernetes.tracker import EVICTED_BY_QUEUE, Tracker
from kubetune.launcher import TrialExit
from kubetune.log import get_logger

log = get_logger("kubetune.kubernetes.launcher")
SYNC_TIMEOUT_S = 60
WORKLOADS = ("kueue.x-k8s.io", "v1beta2", "workloads")  # group, version, plural
WORKLOAD_JOB_UID_LABEL = "kueue.x-k8s.io/job-uid"  # Kueue's label on a Job's Workload


class KubernetesLauncher:
    name = "kubernetes"

    def __init__(
        self, api: client.ApiClient, namespace: str, settings: JobSettings, owner: Obj | None = None
    ) -> None:
        self.batch = client.BatchV1Api(api)
        self.core = client.CoreV1Api(api)
        self.objects = client.CustomObjectsApi(api)
        self.namespace = namespace
        self.settings = settings
        self.gpus = settings.gpus
        self.queue = settings.kueueQueueName or None
        self.owner = owner
        self._lock = threading.Lock()  # the tracker is fed by the informer threads
        self._tracker = Tracker(settings.pendingTimeoutSeconds, settings.queueTimeoutSeconds)
        self._changed: queue.Queue[int] = queue.Queue()
        self._informers: list[Informer] = []
        self._study: str | None = None

    def launch(self, req: TrialRequest) -> None:
        self._follow(req.study)
        body: Any = build_job(req, self.settings, namespace=self.namespace, owner=self.owner)
        try:
            self.batch.create_namespaced_job(self.namespace, body)
        except ApiException as exc:
            if exc.status != 409:
                raise KubetuneError(
                    f"kubernetes: cannot create Job {body['metadata']['name']}: {api_reason(exc)}"
                ) from None
            log.info("trial_job_exists", index=req.index)  # created before we died: adopt it
        with self._lock:
            self._tracker.track(req.index, time.time(), req.attempt)
        log.info("trial_started", index=req.index, job=body["metadata"]["name"])

    def adopt(self, req: TrialRequest) -> bool:
        self._follow(req.study)
        job = read_job(self.batch, self.namespace, job_name(req.study, req.index, req.attempt))
        if job is None:
            return False
        created = datetime.fromisoformat(job["metadata"]["creationTimestamp"]).timestamp()
        with self._lock:
            self._tracker.track(req.index, created, req.attempt)
        self._changed.put(req.index)  # it may have ended while no controller watched
        return True

    def running(self) -> set[int]:
        with self._lock:
            return set(self._tracker.since)

    def admitted(self) -> dict[int, tuple[float, float]]:
        if self.queue is None:
            return {}
        with self._lock:
            return self._tracker.admissions()

    def wait(self, timeout: float) -> list[TrialExit]:
        self._delete_abandoned()
        deadline = time.monotonic() + timeout
        exits: dict[int, TrialExit] = {}
        while not exits:
            changed = self._drain(deadline - time.monotonic())
            now = time.time()
            with self._lock:
                for index in changed | self._tracker.overdue(now):
                    ex = self._tracker.exit_of(index, now)
                    if ex is not None:
                        exits[index] = ex
                evicted = {i: self._tracker.jobs[i] for i, ex in exits.items() if ex.cause == "queue_evicted"}
                if self.queue is not None:  # an attempt admitted and ended between two admit stages
                    admitted = self._tracker.admissions()
                    exits = {i: replace(ex, admission=admitted.get(i)) for i, ex in exits.items()}
                for index in exits:
                    self._tracker.forget(index)
            for index, job in evicted.items():
                exits[index] = replace(exits[index], reason=self._eviction_reason(job))
            if time.monotonic() >= deadline:
                break
        return sorted(exits.values(), key=lambda e: e.index)

    def stop(self, index: int) -> None:
        """Delete the trial's Job (and so its pod); the Job's DELETED event ends the trial."""
        self._delete_job(index)

    def close(self) -> None:
        self._delete_abandoned()
        for informer in self._informers:
            informer.stop()

    # --- the watches -----------------------------------------------------------

    def _follow(self, study: str) -> None:
        if self._study is not None:
            return
        self._study = study
        selector = f"{STUDY_LABEL}={study}"
        self._informers = [
            Informer(lister, self.namespace, selector, self._feed(on_event))
            for lister, on_event in (
                (self.batch.list_namespaced_job, self._tracker.on_job),
                (self.core.list_namespaced_pod, self._tracker.on_pod),
            )
        ]
        for informer in self._informers:
            informer.start()
        for informer in self._informers:
            if not informer.synced.wait(SYNC_TIMEOUT_S):
                raise KubetuneError(
                    f"kubernetes: could not list trial {informer.selector} in {SYNC_TIMEOUT_S} s"
                )

    def _feed(self, on_event: Callable[[str, Obj], int | None]) -> Callable[[str, Obj], None]:
        """An informer callback: the tracker takes the event, the waiting loop hears of it."""

        def handle(kind: str, obj: Obj) -> None:
            with self._lock:
                index = on_event(kind, obj)
            if index is not None:
                self._changed.put(index)

        return handle

    def _drain(self, timeout: float) -> set[int]:
        changed: set[int] = set()
        try:
            changed.add(self._changed.get(timeout=max(timeout, 0.0)))
            while True:
                changed.add(self._changed.get_nowait())
        except queue.Empty:
            pass
        return changed

    def _eviction_reason(self, job: Obj) -> str:
        """Why Kueue evicted the Job, from its Workload's Evicted condition (Preempted,
        PodsReadyTimeout, Deactivated, ...); the plain fact when the Workload says nothing
        or cannot be read (a queue other than Kueue, or no permission to read Workloads)."""
        selector = f"{WORKLOAD_JOB_UID_LABEL}={job['metadata'].get('uid', '')}"
        group, version, plural = WORKLOADS
        try:
            listed: Any = self.objects.list_namespaced_custom_object(
                group, version, self.namespace, plural, label_selector=selector
            )
        except ApiException as exc:
            log.info("workload_unreadable", job=job["metadata"]["name"], reason=api_reason(exc))
            listed = {}
        for workload in listed.get("items") or []:
            for cond in (workload.get("status") or {}).get("conditions") or []:
                if cond.get("type") == "Evicted" and cond.get("status") == "True":
                    return f"evicted by Kueue ({cond.get('reason', 'unknown')}: {cond.get('message', '')})"
        return EVICTED_BY_QUEUE

    # --- deleting --------------------------------------------------------------

    def _delete_abandoned(self) -> None:
        """Delete the Jobs of trials that ended with their Job still there (never scheduled,
        or evicted by their queue), after their exit was reported.

        By the next wait() the study loop has recorded their failure or loss; a
        controller dying in between finds the Job and adopts it, never
        creating a second Job for the index.
        """
        with self._lock:
            attempts, self._tracker.abandoned = self._tracker.abandoned, set()
        for index, attempt in attempts:
            self._delete_job(index, attempt)

    def _delete_job(self, index: int, attempt: int | None = None) -> None:
        """Delete an attempt's Job: by default the one followed now."""
        assert self._study is not None
        if attempt is None:
            attempt = self._tracker.attempts.get(index, 0)
        try:
            self.batch.delete_namespaced_job(
                job_name(self._study, index, attempt),
                self.namespace,
                propagation_policy="Background",
            )
        except ApiException as exc:
            if exc.status != 404:
                log.warning("delete_failed", index=index, reason=api_reason(exc))
