"""How a trial runs: one interface, a local subprocess or a Kubernetes Job behind it.

Both launchers run the same command line (``contract.trial_command``); the
study loop neither knows nor cares which one it holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from kubetune.contract import TrialRequest, TrialResult
from kubetune.launcher.job import JobSettings
from kubetune.report import Summary


@dataclass(frozen=True)
class TrialExit:
    """A trial that stopped running. ``reason`` explains a failure in words."""

    index: int
    exit_code: int | None
    reason: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class Launcher(Protocol):
    name: str

    def launch(self, req: TrialRequest) -> None:
        """Start the trial; returns once it is submitted, not when it ends."""

    def adopt(self, req: TrialRequest) -> bool:
        """Track a trial a previous controller launched, if it still exists.

        False means it is gone (or cannot be reattached) and never reported
        a result: the caller launches it again under the same index.
        """

    def running(self) -> set[int]:
        """Indices of trials launched or adopted that have not exited."""

    def wait(self, timeout: float) -> list[TrialExit]:
        """Block up to ``timeout`` seconds for trials to exit; those that did."""

    def record(self, result: TrialResult, summary: Summary) -> None:
        """Show a read result where users look (Kubernetes: Job labels, Events)."""

    def conclude(self, summary: Summary, completed: bool) -> None:
        """Show how the study ended (Kubernetes: an Event on the controller's Job)."""

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


def open_launcher(kind: str, *, log_dir: Path, job_settings: JobSettings | None = None) -> Launcher:
    """The launcher a study runs its trials with: ``local`` or ``kubernetes``."""
    if kind == "kubernetes":
        from kubetune.launcher._kubernetes import KubernetesLauncher

        return KubernetesLauncher.from_environment(
            job_settings if job_settings is not None else JobSettings()
        )
    from kubetune.launcher._local import LocalLauncher

    return LocalLauncher(log_dir)


__all__ = ["Launcher", "TrialExit", "exit_reason", "open_launcher"]
