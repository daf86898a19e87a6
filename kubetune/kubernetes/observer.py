"""A study as kubectl shows it: trial Job labels, the controller Job's annotations and Events.

Decoration only: the store holds the truth, and a refused patch or Event is
logged, never a reason to stop a study.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubetune.contract import AdmissionRecord, AttemptRecord, EpochRecord, TrialRequest, TrialResult
from kubetune.controller.leaderboard import Summary
from kubetune.kubernetes.api import Obj, api_reason
from kubetune.kubernetes.events import post_event
from kubetune.kubernetes.job import EPOCH_LABEL, STATUS_LABEL, job_name, value_labels
from kubetune.log import get_logger
from kubetune.names import GROUP

log = get_logger("kubetune.kubernetes.observer")


class JobObserver:
    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        study: str,
        owner: Obj | None,
        params: Iterable[str] = (),
        weighed: Iterable[str] = (),
    ) -> None:
        self.batch = client.BatchV1Api(api)
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.study = study
        self.owner = owner  # the controller's Job; None when run from a laptop
        self.described = [owner] if owner is not None else []  # what its Events are about
        self.params = frozenset(params)  # labelled on every trial Job: a metric never takes their labels
        # Several objectives or constraints: their metrics too label a finished trial's Job.
        self.weighed = tuple(weighed)

    def describe_too(self, obj: Obj) -> None:
        """Post every Event about ``obj`` as well: the Study, for `kubectl describe study`."""
        self.described.append(obj)

    def trial_started(self, req: TrialRequest) -> None:
        self._event("TrialStarted", f"trial {req.index} started: {json.dumps(req.params, sort_keys=True)}")

    def trial_progressed(self, record: EpochRecord, attempt: int) -> None:
        """The epoch a running trial reached, and its metrics there, on its Job."""
        # Recorded whatever their names; on the Job only where a name is free (kubetune.names).
        labels = {EPOCH_LABEL: str(record.epoch), **value_labels(record.metrics, self.params)}
        self._patch(job_name(self.study, record.index, attempt), {"metadata": {"labels": labels}})

    def trial_admitted(self, admission: AdmissionRecord) -> None:
        """Its Job's status label goes from queued to running; an Event says how long it waited."""
        wait = f"{admission.wait_s / 60:.1f} min" if admission.wait_s >= 60 else f"{admission.wait_s:.0f} s"
        self._event("TrialAdmitted", f"trial {admission.index} admitted after {wait} in the queue")
        self._patch(
            job_name(self.study, admission.index, admission.attempt),
            {"metadata": {"labels": {STATUS_LABEL: "running"}}},
        )

    def trial_retried(self, lost: AttemptRecord) -> None:
        message = f"trial {lost.index}: attempt {lost.attempt + 1} lost ({lost.reason}); launching it again"
        self._event("TrialRetried", message, warning=True)
        self._patch(
            job_name(self.study, lost.index, lost.attempt),
            {"metadata": {"labels": {STATUS_LABEL: "lost"}}},
        )

    def trials_in_flight(self, running: int, queued: int) -> None:
        """On the controller's Job's annotations, beside the finished trials' counts."""
        if self.owner is not None:
            counts = {f"{GROUP}/trials-running": str(running), f"{GROUP}/trials-queued": str(queued)}
            self._patch(self.owner["metadata"]["name"], {"metadata": {"annotations": counts}})

    def trial_finished(self, result: TrialResult, summary: Summary, attempt: int) -> None:
        """The metric on the trial's Job (a `-L` leaderboard); an Event and progress on the controller's."""
        labels: dict[str, str] = {STATUS_LABEL: result.status}
        if result.objective_value is not None:
            weighed = {m: result.metrics[m] for m in self.weighed if m in result.metrics}
            labels |= value_labels({**weighed, result.objective: result.objective_value}, self.params)
        if result.last_epoch is not None:
            labels[EPOCH_LABEL] = str(result.last_epoch)
        if result.succeeded:
            self._event(
                "TrialSucceeded", f"trial {result.index}: {result.objective}={result.objective_value:.4f}"
            )
        elif result.pruned:
            self._event(
                "TrialPruned", f"trial {result.index} pruned at epoch {result.last_epoch}: {result.reason}"
            )
        else:
            self._event("TrialFailed", f"trial {result.index} failed: {result.reason}", warning=True)
        self._patch(job_name(self.study, result.index, attempt), {"metadata": {"labels": labels}})
        if self.owner is not None:
            self._patch(self.owner["metadata"]["name"], {"metadata": {"annotations": _progress(summary)}})

    def study_ended(self, summary: Summary, completed: bool) -> None:
        """`kubectl describe` says how the study ended.

        The Job's own status follows from the controller's exit code (the
        chart's podFailurePolicy fails it at once on a failed study).
        """
        outcome = "completed" if completed else "failed"
        best = f"; best trial {summary.best.index}" if summary.best is not None else "; no trial succeeded"
        message = f"study {outcome}: {summary.succeeded} trials succeeded, {summary.failed} failed{best}"
        if summary.ended_by is not None:
            message += f"; no trial started after {summary.ended_by}"
        self._event("StudyCompleted" if completed else "StudyFailed", message, warning=not completed)
        if self.owner is not None:
            status = {f"{GROUP}/study-status": outcome}
            self._patch(self.owner["metadata"]["name"], {"metadata": {"annotations": status}})

    def _event(self, reason: str, message: str, *, warning: bool = False) -> None:
        for about in self.described:
            post_event(self.core, about, reason, message, warning=warning)

    def _patch(self, name: str, patch: Obj) -> None:
        try:
            self.batch.patch_namespaced_job(name, self.namespace, patch)
        except ApiException as exc:
            # A Job cleaned up by its TTL is no reason to stop a study.
            log.warning("patch_failed", job=name, reason=api_reason(exc))


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
