"""Trials as local subprocesses, with exactly the command line a Job runs."""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from kubetune.contract import TrialRequest, trial_command
from kubetune.launcher._base import Cause, TrialExit, exit_reason
from kubetune.log import get_logger

log = get_logger("kubetune.launcher.local")
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # Like containers dying with their pod: a killed runner leaves no trial
    # training on unattended (a restarted runner relaunches it).
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _executable() -> str:
    """The ``kubetune`` console script of this interpreter's environment."""
    beside = Path(sys.executable).parent / "kubetune"
    return str(beside) if beside.exists() else (shutil.which("kubetune") or "kubetune")


class LocalLauncher:
    name = "local"
    gpus = 1  # a local trial has the machine's accelerator, if any, to itself

    def __init__(
        self, log_dir: Path, env: dict[str, str] | None = None, executable: str | None = None
    ) -> None:
        self.log_dir = log_dir
        self.env = env
        self.executable = executable or _executable()
        self._procs: dict[int, tuple[subprocess.Popen[bytes], IO[bytes]]] = {}
        self._stopped: set[int] = set()

    def launch(self, req: TrialRequest) -> None:
        argv = trial_command(req)
        argv[0] = self.executable
        self.log_dir.mkdir(parents=True, exist_ok=True)
        out = open(self.log_dir / f"trial-{req.index:06d}.log", "ab")  # noqa: SIM115 - closed on exit
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "KUBETUNE_LOG_FORMAT": "json", **(self.env or {})},
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        self._procs[req.index] = (proc, out)
        log.info("trial_started", index=req.index, pid=proc.pid, log=out.name)

    def adopt(self, req: TrialRequest) -> bool:
        # The previous runner's children died with it (PDEATHSIG): nothing to adopt.
        del req
        return False

    def running(self) -> set[int]:
        return set(self._procs)

    def wait(self, timeout: float) -> list[TrialExit]:
        deadline = time.monotonic() + timeout
        while True:
            exits = [self._reap(i) for i, (p, _) in list(self._procs.items()) if p.poll() is not None]
            if exits or not self._procs or time.monotonic() >= deadline:
                return exits
            time.sleep(0.1)

    def _reap(self, index: int) -> TrialExit:
        proc, out = self._procs.pop(index)
        out.close()
        code = proc.returncode
        cause: Cause = "succeeded" if code == 0 else "exit" if 0 < code <= 128 else "signal"
        if index in self._stopped:
            cause = "stopped"
        self._stopped.discard(index)
        return TrialExit(index, 137 if code == -signal.SIGKILL else code, exit_reason(code), cause)

    def stop(self, index: int) -> None:
        entry = self._procs.get(index)
        if entry is not None:
            entry[0].kill()  # reaped, and reported, by the next wait()
            self._stopped.add(index)

    def close(self) -> None:
        for proc, out in self._procs.values():
            proc.kill()
            proc.wait()
            out.close()
        self._procs.clear()
