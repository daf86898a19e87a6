"""The launcher protocol and the exit it reports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from kubetune.contract import TrialRequest


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
