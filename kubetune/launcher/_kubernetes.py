"""Trials as Kubernetes Jobs, followed through watches.

Job and pod state arrive through list+watch (resuming from the last
resourceVersion, re-listing on 410 Gone), never tight polling. The controller
learns a trial ended from its Job's Complete/Failed condition; why it failed
comes from the pod: exit code, OOMKilled, eviction, or a scheduler message
when no node could take it within ``pendingTimeoutSeconds``.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from kubetune.contract import TrialRequest, TrialResult
from kubetune.errors import KubetuneError
from kubetune.launcher import TrialExit, exit_reason
from kubetune.launcher.job import (
    GROUP,
    STUDY_LABEL,
    TRIAL_LABEL,
    JobSettings,
    build_job,
    job_name,
    label_value,
)
from kubetune.log import get_logger
from kubetune.report import Summary

log = get_logger("kubetune.launcher.kubernetes")
SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
WATCH_TIMEOUT_S = 60  # each watch request ends after this and resumes from its resourceVersion

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


class _Informer:
    """Keeps a live view of one resource type (by label selector) and reports each change."""

    def __init__(
        self,
        list_fn: Callable[..., Any],
        namespace: str,
        selector: str,
        on_change: Callable[[str, Obj], None],
    ) -> None:
        self.list_fn = list_fn
        self.namespace = namespace
        self.selector = selector
        self.on_change = on_change
        self._stop = threading.Event()
        self._watch: watch.Watch | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"informer-{selector}")
        self.synced = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                self._watch_from(self._list())
                backoff = 0.5
            except ApiException as exc:
                if exc.status != 410 and not self._stop.is_set():
                    log.warning("watch_error", selector=self.selector, status=exc.status, reason=exc.reason)
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, 30.0)
                # 410 Gone: our resourceVersion is too old; re-list at once.
            except Exception as exc:
                if self._stop.is_set():
                    return  # stop() cut the stream: an ending, not an error
                log.warning("watch_error", selector=self.selector, error=str(exc))
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)

    def _list(self) -> str:
        resp = self.list_fn(self.namespace, label_selector=self.selector, _preload_content=False)
        doc = json.loads(resp.data)
        for obj in doc.get("items", []):
            self.on_change("ADDED", obj)
        self.synced.set()
        return str(doc["metadata"]["resourceVersion"])

    def _watch_from(self, rv: str) -> None:
        while not self._stop.is_set():
            self._watch = watch.Watch()
            for event in self._watch.stream(
                self.list_fn,
                self.namespace,
                label_selector=self.selector,
                resource_version=rv,
                timeout_seconds=WATCH_TIMEOUT_S,
                allow_watch_bookmarks=True,
                deserialize=False,
            ):
                obj = event["object"]
                if event["type"] == "ERROR":
                    raise ApiException(status=obj.get("code"), reason=obj.get("message"))
                rv = obj["metadata"]["resourceVersion"]
                if event["type"] != "BOOKMARK":
                    self.on_change(event["type"], obj)


class KubernetesLauncher:
    name = "kubernetes"

    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        settings: JobSettings,
        owner_job: str | None = None,
    ) -> None:
        self.batch = client.BatchV1Api(api)
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.settings = settings
        self.owner = self._get_job(owner_job) if owner_job else None
        if owner_job and self.owner is None:
            raise KubetuneError(f"kubernetes: owner Job {namespace}/{owner_job} not found")
        self._lock = threading.Lock()
        self._jobs: dict[int, Obj] = {}
        self._pods: dict[int, dict[str, Obj]] = {}
        self._tracked: dict[int, float] = {}  # index -> when it was launched or adopted
        self._unschedulable: set[int] = set()  # timed out Pending: delete once recorded
        self._changed: queue.Queue[int] = queue.Queue()
        self._informers: list[_Informer] = []
        self._study: str | None = None

    @classmethod
    def from_environment(cls, settings: JobSettings) -> KubernetesLauncher:
        return cls(api_client(), own_namespace(), settings, os.environ.get("KUBETUNE_OWNER_JOB"))

    # --- the Launcher interface ---------------------------------------------

    def launch(self, req: TrialRequest) -> None:
        self._follow(req.study)
        body: Any = build_job(req, self.settings, namespace=self.namespace, owner=self.owner)
        try:
            self.batch.create_namespaced_job(self.namespace, body)
        except ApiException as exc:
            if exc.status != 409:
                raise KubetuneError(
                    f"kubernetes: cannot create Job {body['metadata']['name']}: {_api_reason(exc)}"
                ) from None
            log.info("trial_job_exists", index=req.index)  # created before we died: adopt it
        with self._lock:
            self._tracked[req.index] = time.time()
        self._event("TrialStarted", f"trial {req.index} started: {json.dumps(req.params, sort_keys=True)}")
        log.info("trial_started", index=req.index, job=body["metadata"]["name"])

    def adopt(self, req: TrialRequest) -> bool:
        self._follow(req.study)
        job = self._get_job(job_name(req.study, req.index))
        if job is None:
            return False
        created = datetime.fromisoformat(job["metadata"]["creationTimestamp"]).timestamp()
        with self._lock:
            self._tracked[req.index] = created
        self._changed.put(req.index)  # it may have ended while no controller watched
        return True

    def running(self) -> set[int]:
        with self._lock:
            return set(self._tracked)

    def wait(self, timeout: float) -> list[TrialExit]:
        deadline = time.monotonic() + timeout
        exits: dict[int, TrialExit] = {}
        while not exits:
            changed = self._drain(deadline - time.monotonic())
            for index in changed | self._overdue():
                ex = self._exit_of(index)
                if ex is not None:
                    exits[index] = ex
            if time.monotonic() >= deadline:
                break
        with self._lock:
            for index in exits:
                self._tracked.pop(index, None)
        return sorted(exits.values(), key=lambda e: e.index)

    def record(self, result: TrialResult, summary: Summary) -> None:
        """Put the metric on the trial's Job and the progress on the controller's."""
        if self._study is None:
            return
        labels: dict[str, str] = {f"{GROUP}/status": result.status}
        if result.succeeded and result.objective_value is not None:
            labels[f"{GROUP}/{result.objective}"] = label_value(result.objective_value)
            message = f"trial {result.index}: {result.objective}={result.objective_value:.4f}"
            self._event("TrialSucceeded", message)
        else:
            self._event("TrialFailed", f"trial {result.index} failed: {result.reason}", warning=True)
        self._patch_job(job_name(self._study, result.index), {"metadata": {"labels": labels}})
        with self._lock:
            unschedulable = result.index in self._unschedulable
            self._unschedulable.discard(result.index)
        if unschedulable:
            self._delete_job(result.index)
        if self.owner is not None:
            self._patch_job(self.owner["metadata"]["name"], {"metadata": {"annotations": _progress(summary)}})

    def conclude(self, summary: Summary, completed: bool) -> None:
        """An Event on the controller's Job: `kubectl describe` says how the study ended.

        The Job's own status follows from the controller's exit code (the
        chart's podFailurePolicy fails it at once on a failed study).
        """
        outcome = "completed" if completed else "failed"
        best = f"; best trial {summary.best.index}" if summary.best is not None else "; no trial succeeded"
        message = f"study {outcome}: {summary.succeeded} trials succeeded, {summary.failed} failed{best}"
        reason = "StudyCompleted" if completed else "StudyFailed"
        self._event(reason, message, warning=not completed)
        if self.owner is not None:
            status = {f"{GROUP}/study-status": outcome}
            self._patch_job(self.owner["metadata"]["name"], {"metadata": {"annotations": status}})

    def close(self) -> None:
        for informer in self._informers:
            informer.stop()

    # --- state from the watches ----------------------------------------------

    def _follow(self, study: str) -> None:
        if self._study is not None:
            return
        self._study = study
        selector = f"{STUDY_LABEL}={study}"
        self._informers = [
            _Informer(self.batch.list_namespaced_job, self.namespace, selector, self._on_job),
            _Informer(self.core.list_namespaced_pod, self.namespace, selector, self._on_pod),
        ]
        for informer in self._informers:
            informer.start()
        for informer in self._informers:
            if not informer.synced.wait(60):
                raise KubetuneError(f"kubernetes: could not list trial {informer.selector} in 60 s")

    def _on_job(self, kind: str, obj: Obj) -> None:
        index = _index(obj)
        if index is None:
            return
        with self._lock:
            if kind == "DELETED":
                self._jobs[index] = {**obj, "deleted": True}
            else:
                self._jobs[index] = obj
        self._changed.put(index)

    def _on_pod(self, kind: str, obj: Obj) -> None:
        index = _index(obj)
        if index is None:
            return
        with self._lock:
            # A DELETED event carries the pod's last state, which is kept: an
            # evicted pod is often gone by the time its Job reports Failed, and
            # its conditions and exit code are the reason to record.
            self._pods.setdefault(index, {})[obj["metadata"]["name"]] = obj
        self._changed.put(index)

    def _drain(self, timeout: float) -> set[int]:
        changed: set[int] = set()
        try:
            changed.add(self._changed.get(timeout=max(timeout, 0.0)))
            while True:
                changed.add(self._changed.get_nowait())
        except queue.Empty:
            pass
        return changed

    def _overdue(self) -> set[int]:
        """Tracked trials that have been pending longer than allowed."""
        limit = self.settings.pendingTimeoutSeconds
        now = time.time()
        with self._lock:
            return {i for i, since in self._tracked.items() if now - since > limit and not self._started(i)}

    def _started(self, index: int) -> bool:
        pods = self._pods.get(index, {}).values()
        return any(p.get("status", {}).get("phase") not in (None, "Pending") for p in pods)

    def _exit_of(self, index: int) -> TrialExit | None:
        with self._lock:
            if index not in self._tracked:
                return None
            job = self._jobs.get(index)
            pods = list(self._pods.get(index, {}).values())
            since = self._tracked[index]
        if job is not None and job.get("deleted"):
            return TrialExit(index, None, "trial Job was deleted before it finished")
        conditions = {
            c["type"]: c
            for c in (job or {}).get("status", {}).get("conditions") or []
            if c.get("status") == "True"
        }
        # A Succeeded pod already is the trial's exit 0 (one completion, so the
        # Job can only complete); the Job's Complete condition follows ~1 s
        # later, time every trial would otherwise pay (bench/: scaling, controller).
        if "Complete" in conditions or any(_phase(p) == "Succeeded" for p in pods):
            return TrialExit(index, 0, "succeeded")
        if "Failed" in conditions:
            return _failure(index, conditions["Failed"], pods)
        if time.time() - since > self.settings.pendingTimeoutSeconds and not self._started(index):
            # Deleted in record(), once its failure is in the store: a controller
            # dying in between then finds the Job and adopts it, never creating
            # a second Job for the index.
            with self._lock:
                self._unschedulable.add(index)
            return TrialExit(index, None, _pending_reason(pods, self.settings.pendingTimeoutSeconds))
        return None

    # --- API helpers ---------------------------------------------------------

    def _get_job(self, name: str) -> Obj | None:
        try:
            resp: Any = self.batch.read_namespaced_job(name, self.namespace, _preload_content=False)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise KubetuneError(f"kubernetes: cannot read Job {name}: {_api_reason(exc)}") from None
        job: Obj = json.loads(resp.data)
        return job

    def _delete_job(self, index: int) -> None:
        assert self._study is not None
        try:
            self.batch.delete_namespaced_job(
                job_name(self._study, index), self.namespace, propagation_policy="Background"
            )
        except ApiException as exc:
            if exc.status != 404:
                log.warning("delete_failed", index=index, reason=_api_reason(exc))

    def _patch_job(self, name: str, patch: Obj) -> None:
        try:
            self.batch.patch_namespaced_job(name, self.namespace, patch)
        except ApiException as exc:
            # Decoration only: a Job cleaned up by its TTL is no reason to stop a study.
            log.warning("patch_failed", job=name, reason=_api_reason(exc))

    def _event(self, reason: str, message: str, *, warning: bool = False) -> None:
        if self.owner is None:
            return
        meta = self.owner["metadata"]
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        body: Any = {
            "metadata": {"generateName": f"{meta['name']}.", "namespace": self.namespace},
            "involvedObject": {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "name": meta["name"],
                "namespace": self.namespace,
                "uid": meta["uid"],
            },
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "source": {"component": "kubetune-controller"},
        }
        try:
            self.core.create_namespaced_event(self.namespace, body)
        except ApiException as exc:
            log.warning("event_failed", reason=_api_reason(exc))


def _index(obj: Obj) -> int | None:
    value = (obj.get("metadata", {}).get("labels") or {}).get(TRIAL_LABEL)
    return int(value) if value and value.isdigit() else None


def _failure(index: int, condition: Obj, pods: list[Obj]) -> TrialExit:
    why = f"Job failed ({condition.get('reason', 'unknown')}: {condition.get('message', '')})".replace(
        ": )", ")"
    )
    latest = max(pods, key=lambda p: p["metadata"].get("creationTimestamp", ""), default=None)
    if latest is None:
        return TrialExit(index, None, why)
    status = latest.get("status", {})
    for cond in status.get("conditions") or []:
        if cond.get("type") == "DisruptionTarget" and cond.get("status") == "True":
            return TrialExit(index, None, f"pod evicted ({cond.get('reason')}: {cond.get('message', '')})")
    for cs in status.get("containerStatuses") or []:
        term = (cs.get("state") or {}).get("terminated") or (cs.get("lastState") or {}).get("terminated")
        if term:
            code = int(term.get("exitCode", 1))
            detail = " (OOMKilled)" if term.get("reason") == "OOMKilled" else ""
            return TrialExit(index, code, f"{exit_reason(code)}{detail}; {why}")
    return TrialExit(index, None, why)


def _phase(pod: Obj) -> str | None:
    phase = pod.get("status", {}).get("phase")
    return str(phase) if phase else None


def _pending_reason(pods: list[Obj], limit_s: int) -> str:
    """Why a trial's pod is still Pending after limit_s: the scheduler's message,
    or, once scheduled, why its container is waiting (an image that cannot be pulled)."""
    for pod in pods:
        status = pod.get("status", {})
        for cond in status.get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                return f"not scheduled within {limit_s} s: {cond.get('message', cond.get('reason', ''))}"
        for container in status.get("containerStatuses") or []:
            waiting = container.get("state", {}).get("waiting")
            if waiting:
                why = f"{waiting.get('reason')}: {waiting.get('message', '')}"
                return f"not started within {limit_s} s: {why}"
    return f"not scheduled within {limit_s} s"


def _progress(summary: Summary) -> dict[str, str]:
    best = summary.best
    out = {
        f"{GROUP}/trials-finished": str(summary.total),
        f"{GROUP}/trials-succeeded": str(summary.succeeded),
        f"{GROUP}/trials-failed": str(summary.failed),
    }
    if best is not None:
        out[f"{GROUP}/best-trial"] = str(best.index)
        out[f"{GROUP}/best-value"] = f"{best.objective_value:.6g}"
        out[f"{GROUP}/best-params"] = json.dumps(best.params, sort_keys=True)
    return out


def _api_reason(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "")["message"])
    except (TypeError, ValueError, KeyError):
        return f"HTTP {exc.status} {exc.reason}"
