"""The trial Jobs' state machine, one row per transition: watch events in, the trial's exit out."""

from __future__ import annotations

import typing
from datetime import UTC, datetime
from typing import Any

import pytest

from kubetune.kubernetes import Tracker
from kubetune.launcher import Cause

Obj = dict[str, Any]
PENDING_S = 10.0
T0 = 1000.0
LABELS = {"kubetune.dev/study": "s", "kubetune.dev/trial": "3"}


def job(*conditions: tuple[str, str], deleted: bool = False) -> tuple[str, str, Obj]:
    conds = [{"type": t, "status": "True", "reason": r, "message": f"{r} happened"} for t, r in conditions]
    return ("job", "DELETED" if deleted else "MODIFIED", {"metadata": {"labels": LABELS},
                                                          "status": {"conditions": conds}})  # fmt: skip


def queued_job(*, suspend: bool, started: float | None = None) -> tuple[str, str, Obj]:
    """A trial Job as a queue holds it (suspended) or admits it (resumed at ``started``, in seconds)."""
    status = {} if started is None else {"startTime": datetime.fromtimestamp(started, UTC).isoformat()}
    return (
        "job",
        "MODIFIED",
        {"metadata": {"labels": LABELS}, "spec": {"suspend": suspend}, "status": status},
    )


def pod(phase: str, *, name: str = "s-000003-a", created: str = "2030-01-01T00:00:00Z",
        terminated: Obj | None = None, waiting: Obj | None = None, conditions: list[Obj] | None = None,
        deleted: bool = False) -> tuple[str, str, Obj]:  # fmt: skip
    status: Obj = {"phase": phase, "conditions": conditions or []}
    if terminated is not None:
        status["containerStatuses"] = [{"state": {"terminated": terminated}}]
    if waiting is not None:
        status["containerStatuses"] = [{"state": {"waiting": waiting}}]
    meta = {"name": name, "labels": LABELS, "creationTimestamp": created}
    return ("pod", "DELETED" if deleted else "MODIFIED", {"metadata": meta, "status": status})


def disruption(reason: str) -> Obj:
    return {"type": "DisruptionTarget", "status": "True", "reason": reason, "message": f"{reason} happened"}


EVICTED = {"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI",
           "message": "Eviction API: evicting"}  # fmt: skip
UNSCHEDULABLE = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                 "message": "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."}  # fmt: skip

# (case, events, seconds after launch, expected (exit_code, reason, cause) or None while running)
CASES: list[tuple[str, list[tuple[str, str, Obj]], float, tuple[int | None, str, str] | None]] = [
    ("just launched", [], 1, None),
    ("pending within the timeout", [pod("Pending")], PENDING_S - 1, None),
    ("running past the pending timeout", [pod("Running")], PENDING_S + 5, None),
    ("pod succeeded: done before the Job says so", [pod("Running"), pod("Succeeded")], 5, (0, "succeeded", "succeeded")),
    ("job complete", [job(("Complete", ""))], 5, (0, "succeeded", "succeeded")),
    ("never scheduled", [pod("Pending", conditions=[UNSCHEDULABLE])], PENDING_S + 1,
     (None, f"not scheduled within {PENDING_S:g} s: 0/1 nodes are available: 1 Insufficient nvidia.com/gpu.", "unschedulable")),
    ("no pod at all past the timeout", [], PENDING_S + 1, (None, f"not scheduled within {PENDING_S:g} s", "unschedulable")),
    ("exit code", [pod("Failed", terminated={"exitCode": 1}), job(("Failed", "BackoffLimitExceeded"))], 5,
     (1, "exited with code 1; Job failed (BackoffLimitExceeded: BackoffLimitExceeded happened)", "exit")),
    ("out of memory", [pod("Failed", terminated={"exitCode": 137, "reason": "OOMKilled"}),
                       job(("Failed", "BackoffLimitExceeded"))], 5,
     (137, "killed by SIGKILL (exit 137: out of memory, or stopped from outside) (OOMKilled); "
           "Job failed (BackoffLimitExceeded: BackoffLimitExceeded happened)", "oom")),
    # The order the watches may deliver: the pod's last state, the pod deleted
    # (its Job let go of it), then the Job's Failed condition. The reason is in
    # the pod that is gone.
    ("evicted, pod gone before the Job failed",
     [pod("Failed", conditions=[EVICTED], terminated={"exitCode": 143}),
      pod("Failed", conditions=[EVICTED], terminated={"exitCode": 143}, deleted=True),
      job(("Failed", "BackoffLimitExceeded"))], 5,
     (None, "pod evicted (EvictionByEvictionAPI: Eviction API: evicting)", "evicted")),
    ("deadline exceeded", [pod("Running"), job(("Failed", "DeadlineExceeded"))], 5,
     (None, "Job failed (DeadlineExceeded: DeadlineExceeded happened)", "deadline")),
    ("the latest pod gives the reason",
     [pod("Failed", name="a", created="2030-01-01T00:00:00Z", terminated={"exitCode": 2}),
      pod("Failed", name="b", created="2030-01-01T00:01:00Z", terminated={"exitCode": 5}),
      job(("Failed", "BackoffLimitExceeded"))], 5,
     (5, "exited with code 5; Job failed (BackoffLimitExceeded: BackoffLimitExceeded happened)", "exit")),
    ("job deleted", [pod("Running"), job(deleted=True)], 5, (None, "trial Job was deleted before it finished", "deleted")),
    ("preempted for a spot reclaim or a higher priority", [pod("Failed", conditions=[disruption("PreemptionByScheduler")]),
                                job(("Failed", "BackoffLimitExceeded"))], 5,
     (None, "pod preempted (PreemptionByScheduler: PreemptionByScheduler happened)", "preempted")),
    ("its node lost", [pod("Failed", conditions=[disruption("DeletionByTaintManager")]),
                       job(("Failed", "BackoffLimitExceeded"))], 5,
     (None, "pod lost with its node (DeletionByTaintManager: DeletionByTaintManager happened)", "node_lost")),
    ("killed by the kubelet under node pressure", [pod("Failed", conditions=[disruption("TerminationByKubelet")]),
                                                   job(("Failed", "BackoffLimitExceeded"))], 5,
     (None, "pod evicted (TerminationByKubelet: TerminationByKubelet happened)", "evicted")),
    ("an image that cannot be pulled", [pod("Pending", waiting={"reason": "ImagePullBackOff",
                                                                "message": "Back-off pulling image \"nope:1\""})],
     PENDING_S + 1, (None, 'image could not be pulled (ImagePullBackOff: Back-off pulling image "nope:1")', "image")),
    ("killed by a signal", [pod("Failed", terminated={"exitCode": 143}), job(("Failed", "BackoffLimitExceeded"))], 5,
     (143, "killed by signal 15 (exit 143); Job failed (BackoffLimitExceeded: BackoffLimitExceeded happened)", "signal")),
    ("failed with no pod to say why", [job(("Failed", "BackoffLimitExceeded"))], 5,
     (None, "Job failed (BackoffLimitExceeded: BackoffLimitExceeded happened)", "unknown")),
    # Kueue: a suspended Job waits for quota, its pending clock not started.
    ("queued far past the pending timeout", [queued_job(suspend=True)], 100 * PENDING_S, None),
    ("admitted late, pending within the timeout from admission",
     [queued_job(suspend=True), queued_job(suspend=False, started=T0 + 500)], 500 + PENDING_S - 1, None),
    # The resume is seen before the Job controller sets the start time: the clock waits for it.
    ("resumed, its start time not set yet", [queued_job(suspend=True), queued_job(suspend=False)],
     100 * PENDING_S, None),
    ("admitted, then never scheduled", [queued_job(suspend=True), queued_job(suspend=False, started=T0 + 500)],
     500 + PENDING_S + 1, (None, f"not scheduled within {PENDING_S:g} s", "unschedulable")),
    # Kueue evicts an admitted Job by suspending it again: the attempt is over, the infrastructure's loss.
    ("suspended again after it was admitted",
     [queued_job(suspend=True), queued_job(suspend=False, started=T0 + 5), queued_job(suspend=True)], 6,
     (None, "evicted by its queue: the Job was suspended again", "queue_evicted")),
    ("suspended again after its pod ran, the resume unseen",
     [pod("Running"), pod("Running", deleted=True), queued_job(suspend=True)], 6,
     (None, "evicted by its queue: the Job was suspended again", "queue_evicted")),
    ("finished before the suspension", [queued_job(suspend=False), pod("Succeeded"), queued_job(suspend=True)], 6,
     (0, "succeeded", "succeeded")),
]  # fmt: skip


@pytest.mark.parametrize(("events", "after", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_transition(
    events: list[tuple[str, str, Obj]], after: float, expected: tuple[int | None, str, str] | None
) -> None:
    tracker = Tracker(PENDING_S)
    tracker.track(3, T0)
    for source, kind, obj in events:
        assert (tracker.on_job if source == "job" else tracker.on_pod)(kind, obj) == 3
    ex = tracker.exit_of(3, T0 + after)
    assert (None if ex is None else (ex.exit_code, ex.reason, ex.cause)) == expected


def test_every_cause_a_launcher_can_report_is_in_the_table() -> None:
    produced = {c[3][2] for c in CASES if c[3] is not None} | {"stopped"}  # stop(): the launcher's own word
    assert produced == set(typing.get_args(Cause))


def test_only_the_never_scheduled_and_the_evicted_are_left_to_delete() -> None:
    tracker = Tracker(PENDING_S)
    for index in (1, 2, 4):
        tracker.track(index, T0)
    tracker.on_pod("MODIFIED", {"metadata": {"name": "p", "labels": {"kubetune.dev/trial": "2"}},
                                "status": {"phase": "Running"}})  # fmt: skip
    for suspend in (False, True):  # trial 4: admitted, then evicted by its queue
        tracker.on_job(
            "MODIFIED", {"metadata": {"labels": {"kubetune.dev/trial": "4"}}, "spec": {"suspend": suspend}}
        )
    assert tracker.overdue(T0 + PENDING_S + 1) == {1}
    assert tracker.exit_of(1, T0 + PENDING_S + 1) is not None
    assert tracker.exit_of(2, T0 + PENDING_S + 1) is None
    assert tracker.exit_of(4, T0 + 1) is not None
    assert tracker.abandoned == {(1, 0), (4, 0)}
    tracker.track(1, T0 + PENDING_S + 2, attempt=1)  # relaunched before the Job is deleted
    assert tracker.abandoned == {(1, 0), (4, 0)}  # still the first attempt's Job to delete, not the new one's


def test_a_new_attempt_starts_unseen_by_its_queue() -> None:
    tracker = Tracker(PENDING_S)
    tracker.track(4, T0)
    for suspend in (False, True):
        tracker.on_job(
            "MODIFIED", {"metadata": {"labels": {"kubetune.dev/trial": "4"}}, "spec": {"suspend": suspend}}
        )
    tracker.track(4, T0 + 1, attempt=1)
    labels = {"kubetune.dev/trial": "4", "kubetune.dev/attempt": "1"}
    tracker.on_job("ADDED", {"metadata": {"labels": labels}, "spec": {"suspend": True}})
    assert tracker.exit_of(4, T0 + 100 * PENDING_S) is None  # the new attempt waits in the queue


def test_untracked_and_unlabelled_objects_are_ignored() -> None:
    tracker = Tracker(PENDING_S)
    assert tracker.on_pod("ADDED", {"metadata": {"name": "x", "labels": {}}}) is None
    tracker.on_job("MODIFIED", job(("Complete", ""))[2])
    assert tracker.exit_of(3, T0) is None  # a finished Job this controller does not track
    tracker.track(3, T0)
    assert tracker.exit_of(3, T0) is not None
    tracker.forget(3)
    assert tracker.exit_of(3, T0) is None


def test_an_admission_is_known_once_the_job_is_resumed_with_its_start_time() -> None:
    tracker = Tracker(PENDING_S)
    tracker.track(3, T0)
    assert tracker.admissions() == {}  # no Job seen yet: not known to be admitted
    tracker.on_job(*queued_job(suspend=True)[1:])
    assert tracker.admissions() == {}
    tracker.on_job(*queued_job(suspend=False)[1:])
    assert tracker.admissions() == {}  # resumed, its start time not set yet
    tracker.on_job(*queued_job(suspend=False, started=T0 + 42)[1:])
    assert tracker.admissions() == {3: (T0, T0 + 42)}
    tracker.on_job(*queued_job(suspend=True)[1:])  # evicted: Kubernetes clears the start time
    assert tracker.admissions() == {3: (T0, T0 + 42)}  # still this attempt's admission, to be recorded
    tracker.track(3, T0 + 50, attempt=1)
    assert tracker.admissions() == {}


def test_a_queue_timeout_gives_up_a_trial_never_admitted_and_only_that() -> None:
    tracker = Tracker(PENDING_S, queue_timeout_s=60)
    for index in (3, 4):
        tracker.track(index, T0)
    tracker.on_job(*queued_job(suspend=True)[1:])  # trial 3 waits
    labels = {"kubetune.dev/trial": "4"}
    start = datetime.fromtimestamp(T0 + 50, UTC).isoformat()
    tracker.on_job("MODIFIED", {"metadata": {"labels": labels}, "spec": {"suspend": True}})
    tracker.on_job("MODIFIED", {"metadata": {"labels": labels}, "spec": {"suspend": False},
                                "status": {"startTime": start}})  # fmt: skip
    tracker.on_pod("MODIFIED", {"metadata": {"name": "p", "labels": labels}, "status": {"phase": "Running"}})
    assert tracker.exit_of(3, T0 + 59) is None
    ex = tracker.exit_of(3, T0 + 61)
    assert ex is not None and (ex.reason, ex.cause) == (
        "not admitted by its queue within 60 s",
        "unschedulable",
    )
    assert tracker.exit_of(4, T0 + 1000) is None  # admitted in time: the timeout no longer applies
    assert tracker.abandoned == {(3, 0)}
