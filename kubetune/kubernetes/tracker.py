"""The trial Jobs' state machine: watch events in, trial exits out.

Pure: no API calls, no threads, the clock passed in. A trial ends when its
Job is Complete (or its pod Succeeded, which comes first), Failed, deleted,
or still unscheduled ``pending_timeout_s`` after its Job was admitted. Why it
failed comes from the pod: an eviction, the exit code, OOMKilled, the
scheduler's message.

A Job waiting in a queue is suspended (``spec.suspend``: Kueue suspends the
Jobs it manages until their ClusterQueue has quota): its pending clock has
not started, however long it waits. Admission unsuspends it, and Kubernetes
then sets the Job's ``status.startTime`` anew; the clock starts there (the
resume may be seen first: until the start time is set, the clock waits).
A Job suspended again after it ran was evicted by its queue (Kueue
preempted it, or its pods were not ready in time, or its Workload was
deactivated): its pods are deleted, and the attempt is over.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from kubetune.kubernetes.api import Obj
from kubetune.kubernetes.job import ATTEMPT_LABEL, TRIAL_LABEL
from kubetune.launcher import Cause, TrialExit, exit_reason


@dataclass
class Tracker:
    pending_timeout_s: float
    queue_timeout_s: float | None = None  # None: a Job may wait in its queue for ever
    since: dict[int, float] = field(default_factory=dict)  # tracked index -> launched or adopted at
    attempts: dict[int, int] = field(default_factory=dict)  # tracked index -> the attempt followed
    jobs: dict[int, Obj] = field(default_factory=dict)
    pods: dict[int, dict[str, Obj]] = field(default_factory=dict)
    # Ended while their Jobs are still there: never scheduled (Pending), or evicted
    # by their queue (suspended, and readmitted if left). By (index, attempt): the
    # next attempt may be launched before they are deleted.
    abandoned: set[tuple[int, int]] = field(default_factory=set)
    held: set[int] = field(default_factory=set)  # tracked trials whose Job was seen suspended
    ran: set[int] = field(default_factory=set)  # tracked trials whose Job was seen not suspended
    evicted: set[int] = field(default_factory=set)  # tracked trials whose Job was suspended after it ran
    resumed_at: dict[int, float] = field(default_factory=dict)  # tracked index -> its Job's start time

    def track(self, index: int, since: float, attempt: int = 0) -> None:
        if self.attempts.get(index, attempt) != attempt:
            # A new attempt: what the watches said of the last one is not about it.
            self.jobs.pop(index, None)
            self.pods.pop(index, None)
            for seen in (self.held, self.ran, self.evicted):
                seen.discard(index)
            self.resumed_at.pop(index, None)
        self.since[index] = since
        self.attempts[index] = attempt

    def forget(self, index: int) -> None:
        self.since.pop(index, None)

    def on_job(self, kind: str, obj: Obj) -> int | None:
        """Take a Job watch event; the trial index it concerns, if any."""
        index = self._index(obj)
        if index is not None:
            self.jobs[index] = {**obj, "deleted": True} if kind == "DELETED" else obj
            if not self.queued(index):
                self.ran.add(index)
                started = _epoch(obj.get("status", {}).get("startTime"))
                if started is not None and kind != "DELETED":
                    self.resumed_at[index] = started
            elif index in self.ran or self.pods.get(index):  # a suspended Job runs no pod
                self.evicted.add(index)
            else:
                self.held.add(index)
        return index

    def on_pod(self, kind: str, obj: Obj) -> int | None:
        """Take a pod watch event; the trial index it concerns, if any.

        A DELETED event carries the pod's last state, which is kept: an
        evicted pod is often gone by the time its Job reports Failed, and its
        conditions and exit code are the reason to record.
        """
        del kind
        index = self._index(obj)
        if index is not None:
            self.pods.setdefault(index, {})[obj["metadata"]["name"]] = obj
        return index

    def overdue(self, now: float) -> set[int]:
        """Tracked trials pending longer than allowed since their Job was admitted, or waiting
        in their queue longer than allowed since their launch."""
        return {i for i in self.since if self._overdue(i, now)}

    def _overdue(self, index: int, now: float) -> bool:
        if self.waiting(index):
            return self.queue_timeout_s is not None and now - self.since[index] > self.queue_timeout_s
        return now - self.admitted_at(index) > self.pending_timeout_s and not self.started(index)

    def queued(self, index: int) -> bool:
        """Whether the trial's Job is suspended (by its queue, until admitted)."""
        return bool((self.jobs.get(index) or {}).get("spec", {}).get("suspend"))

    def waiting(self, index: int) -> bool:
        """Whether the trial waits in its queue: suspended, or resumed and the Job controller
        not yet at its start time."""
        started = _epoch((self.jobs.get(index) or {}).get("status", {}).get("startTime"))
        return self.queued(index) or (started is None and index in self.held)

    def admissions(self) -> dict[int, tuple[float, float]]:
        """Tracked trials whose Job was seen admitted: index -> (launched at, admitted at).
        Known once the Job is resumed and Kubernetes has set its ``status.startTime``; kept
        when the queue evicts it again, which clears that time."""
        resumed = self.resumed_at
        return {i: (since, max(since, resumed[i])) for i, since in self.since.items() if i in resumed}

    def admitted_at(self, index: int) -> float:
        """When the trial's pending clock started: its launch, or its Job's latest admission
        if later; infinity while its Job is suspended in a queue."""
        if self.waiting(index):
            return float("inf")
        started = _epoch((self.jobs.get(index) or {}).get("status", {}).get("startTime"))
        return max(self.since[index], started or 0.0)

    def started(self, index: int) -> bool:
        return any(_phase(p) not in (None, "Pending") for p in self.pods.get(index, {}).values())

    def exit_of(self, index: int, now: float) -> TrialExit | None:
        """How the tracked trial ``index`` ended, None while it runs (or is not tracked)."""
        if index not in self.since:
            return None
        job = self.jobs.get(index) or {}
        pods = list(self.pods.get(index, {}).values())
        if job.get("deleted"):
            return TrialExit(index, None, "trial Job was deleted before it finished", "deleted")
        conditions = {
            c["type"]: c for c in job.get("status", {}).get("conditions") or [] if c.get("status") == "True"
        }
        # A Succeeded pod already is the trial's exit 0 (one completion, so the
        # Job can only complete); the Job's Complete condition follows ~1 s
        # later, time every trial would otherwise pay (bench/: scaling, controller).
        if "Complete" in conditions or any(_phase(p) == "Succeeded" for p in pods):
            return TrialExit(index, 0, "succeeded", "succeeded")
        if "Failed" in conditions:
            return _failure(index, conditions["Failed"], pods)
        if index in self.evicted:
            self.abandoned.add((index, self.attempts.get(index, 0)))
            return TrialExit(index, None, EVICTED_BY_QUEUE, "queue_evicted")
        if self._overdue(index, now):
            self.abandoned.add((index, self.attempts.get(index, 0)))
            if self.waiting(index):
                return TrialExit(index, None, f"not admitted by its queue within {self.queue_timeout_s:g} s",
                                 "unschedulable")  # fmt: skip
            pull = _pull_error(pods)
            if pull:
                return TrialExit(index, None, f"image could not be pulled ({pull})", "image")
            why = f"not scheduled within {self.pending_timeout_s:g} s{_unschedulable(pods)}"
            return TrialExit(index, None, why, "unschedulable")
        return None

    def _index(self, obj: Obj) -> int | None:
        """The trial index of a Job or pod of the attempt followed (an earlier one's is ignored)."""
        labels = obj.get("metadata", {}).get("labels") or {}
        index, attempt = labels.get(TRIAL_LABEL, ""), labels.get(ATTEMPT_LABEL, "0")
        if not index.isdigit() or not attempt.isdigit():
            return None
        if int(attempt) != self.attempts.get(int(index), int(attempt)):
            return None
        return int(index)


def _failure(index: int, condition: Obj, pods: list[Obj]) -> TrialExit:
    why = f"Job failed ({condition.get('reason', 'unknown')}: {condition.get('message', '')})".replace(
        ": )", ")"
    )
    if condition.get("reason") == "DeadlineExceeded":
        return TrialExit(index, None, why, "deadline")
    latest = max(pods, key=lambda p: p["metadata"].get("creationTimestamp", ""), default=None)
    if latest is None:
        return TrialExit(index, None, why, "unknown")
    status = latest.get("status", {})
    for cond in status.get("conditions") or []:
        if cond.get("type") == "DisruptionTarget" and cond.get("status") == "True":
            reason = cond.get("reason", "")
            cause = DISRUPTIONS.get(reason, "evicted")
            return TrialExit(index, None, f"pod {_WORDS[cause]} ({reason}: {cond.get('message', '')})", cause)
    for cs in status.get("containerStatuses") or []:
        term = (cs.get("state") or {}).get("terminated") or (cs.get("lastState") or {}).get("terminated")
        if term:
            code = int(term.get("exitCode", 1))
            if term.get("reason") == "OOMKilled":
                return TrialExit(index, code, f"{exit_reason(code)} (OOMKilled); {why}", "oom")
            return TrialExit(index, code, f"{exit_reason(code)}; {why}", "exit" if code <= 128 else "signal")
    return TrialExit(index, None, why, "unknown")


EVICTED_BY_QUEUE = "evicted by its queue: the Job was suspended again"  # without its queue's own words

# DisruptionTarget reasons (Kubernetes' pod disruption conditions) and what they mean.
DISRUPTIONS: dict[str, Cause] = {
    "PreemptionByScheduler": "preempted",
    "DeletionByTaintManager": "node_lost",
    "EvictionByEvictionAPI": "evicted",
    "TerminationByKubelet": "evicted",
}
_WORDS = {"preempted": "preempted", "node_lost": "lost with its node", "evicted": "evicted"}
PULL_ERRORS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")


def _pull_error(pods: list[Obj]) -> str:
    for pod in pods:
        for cs in pod.get("status", {}).get("containerStatuses") or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in PULL_ERRORS:
                return f"{waiting['reason']}: {waiting.get('message', '')}".rstrip(": ")
    return ""


def _epoch(timestamp: object) -> float | None:
    """An API timestamp ('2030-01-01T00:00:00Z') in seconds since the epoch; None if absent or unreadable."""
    if not isinstance(timestamp, str):
        return None
    try:
        return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _phase(pod: Obj) -> str | None:
    phase = pod.get("status", {}).get("phase")
    return str(phase) if phase else None


def _unschedulable(pods: list[Obj]) -> str:
    for pod in pods:
        for cond in pod.get("status", {}).get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                return f": {cond.get('message', cond.get('reason', ''))}"
    return ""
