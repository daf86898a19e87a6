"""The launcher protocol and the exit it reports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from kubetune.contract import TrialRequest

# Why a trial stopped running, as a launcher can tell. The study decides what
# each one means for the study (kubetune.controller.failures).
Cause = Literal[
    "succeeded",
    "exit",  # exited non-zero on its own
    "signal",  # killed by a signal it did not catch
    "oom",  # killed by the kernel's OOM killer (OOMKilled)
    "deadline",  # ran past activeDeadlineSeconds
    "evicted",  # the Eviction API, or the kubelet under node pressure (DisruptionTarget)
    "preempted",  # by the scheduler, for a higher-priority pod (DisruptionTarget)
    "node_lost",  # its node went away (DisruptionTarget: DeletionByTaintManager)
    "queue_evicted",  # suspended again by its queue after it ran (Kueue: preempted, ...)
    "deleted",  # its Job was deleted from outside
    "unschedulable",  # still Pending after pendingTimeoutSeconds
    "image",  # its image could not be pulled
    "stopped",  # stopped by the study itself (Launcher.stop)
    "unknown",  # the Job failed and no pod says why
]


@dataclass(frozen=True)
class TrialExit:
    """A trial that stopped running. ``reason`` explains a failure in words; ``cause`` names it."""

    index: int
    exit_code: int | None
    reason: str
    cause: Cause = "exit"
    # (queued at, admitted at) of the attempt that ended, when a queue admitted it: it may have
    # run and ended before Launcher.admitted() was next asked.
    admission: tuple[float, float] | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class Launcher(Protocol):
    name: str
    gpus: int  # each trial holds this many (GPU-hour budgets count them)
    queue: str | None  # where trials wait to be admitted (a Kueue LocalQueue); None: they start at launch

    def launch(self, req: TrialRequest) -> None:
        """Start the trial; returns once it is submitted, not when it ends."""

    def adopt(self, req: TrialRequest) -> bool:
        """Track a trial a previous controller launched, if it still exists.

        False means it is gone (or cannot be reattached) and never reported
        a result: the caller launches it again under the same index.
        """

    def running(self) -> set[int]:
        """Indices of trials launched or adopted that have not exited."""

    def admitted(self) -> dict[int, tuple[float, float]]:
        """Running trials launched into the queue and admitted since: index -> (queued at,
        admitted at). Empty for a launcher with no queue."""

    def wait(self, timeout: float) -> list[TrialExit]:
        """Block up to ``timeout`` seconds for trials to exit; those that did."""

    def stop(self, index: int) -> None:
        """Stop one running trial now; its exit is reported by a later ``wait``."""

    def close(self) -> None:
        """Release resources. Local trials still running are stopped; Jobs live on."""


def exit_reason(code: int) -> str:
    """Words for a process exit code, in the conventions of shells and kubelets."""
    if code == 0:
        return "succeeded"
    if code in (137, -9):
        return "killed by SIGKILL (exit 137: out of memory, or stopped from outside)"
    if code < 0:
        return f"killed by signal {-code}"
    if code > 128:
        return f"killed by signal {code - 128} (exit {code})"
    return f"exited with code {code}"
