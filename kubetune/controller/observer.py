"""What users see of a study outside the store, as the study loop reports it.

In a cluster that is the trial Jobs' labels, the controller Job's annotations
and Events (:class:`kubetune.kubernetes.JobObserver`). On one machine the
progress line and the exit code say it all, so a local study needs none.
"""

from __future__ import annotations

from typing import Protocol

from kubetune.contract import AdmissionRecord, AttemptRecord, EpochRecord, TrialRequest, TrialResult
from kubetune.controller.leaderboard import Summary


class StudyObserver(Protocol):
    def trial_started(self, req: TrialRequest) -> None:
        """A trial was launched, or launched again under its index after a restart."""

    def trial_progressed(self, record: EpochRecord, attempt: int) -> None:
        """A running trial (in its ``attempt``) reported an epoch."""

    def trial_admitted(self, admission: AdmissionRecord) -> None:
        """A queue admitted a trial's attempt: it runs from now on."""

    def trial_retried(self, lost: AttemptRecord) -> None:
        """The infrastructure took an attempt away; the trial is launched again."""

    def trials_in_flight(self, running: int, queued: int) -> None:
        """Trials launched and not ended, and how many of them wait in a queue; told on a change."""

    def trial_finished(self, result: TrialResult, summary: Summary, attempt: int) -> None:
        """A trial's result is in the store; ``summary`` is the study's state with it."""

    def study_ended(self, summary: Summary, completed: bool) -> None:
        """The study completed, or failed after ``budget.max_failed`` failures."""


class Unobserved:
    """No one to tell: a local study."""

    def trial_started(self, req: TrialRequest) -> None:
        del req

    def trial_progressed(self, record: EpochRecord, attempt: int) -> None:
        del record, attempt

    def trial_admitted(self, admission: AdmissionRecord) -> None:
        del admission

    def trial_retried(self, lost: AttemptRecord) -> None:
        del lost

    def trials_in_flight(self, running: int, queued: int) -> None:
        del running, queued

    def trial_finished(self, result: TrialResult, summary: Summary, attempt: int) -> None:
        del result, summary, attempt

    def study_ended(self, summary: Summary, completed: bool) -> None:
        del summary, completed
