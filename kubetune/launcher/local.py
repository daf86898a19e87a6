"""Trials as local subprocesses, with exactly the command line a Job runs."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from kubetune import kinds
from kubetune.contract import ATTEMPT_ENV, TrialRequest, trial_command
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
    queue: str | None = None  # a local trial starts at once

    def __init__(
        self, log_dir: Path, env: dict[str, str] | None = None, executable: str | None = None
    ) -> None:
        self.log_dir = log_dir
        self.env = env
        self.executable = executable or _executable()
        self._procs: dict[int, tuple[subprocess.Popen[bytes], IO[bytes]]] = {}
        self._stopped: set[int] = set()

    def launch(self, req: TrialRequest) -> None:
        argv = trial_command(req, kinds.of(req.settings).subcommand)
        argv[0] = self.executable
        self.log_dir.mkdir(parents=True, exist_ok=True)
        out = open(self.log_dir / f"trial-{req.index:06d}.log", "ab")  # noqa: SIM115 - closed on exit
        env = {**os.environ, "KUBETUNE_LOG_FORMAT": "json", ATTEMPT_ENV: str(req.attempt), **(self.env or {})}
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            # A session of its own: what the trial starts (a program, its children) can be
            # found and stopped with it, even once orphaned (kill_session).
            start_new_session=True,
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

    def admitted(self) -> dict[int, tuple[float, float]]:
        return {}

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
            kill_session(entry[0].pid)  # reaped, and reported, by the next wait()
            self._stopped.add(index)

    def close(self) -> None:
        """Stop every trial still running, and whatever it started: nothing outlives the study."""
        for proc, out in self._procs.values():
            kill_session(proc.pid)
            proc.wait()
            out.close()
        self._procs.clear()


def kill_session(leader: int) -> None:
    """SIGKILL every process of the session ``leader`` started, its orphans included.

    A process group is not enough: a trial's program runs in a group of its own
    (so the trial can stop it alone), and a shell's children outlive it when it
    is killed. Sessions survive both; only a program that starts a session of
    its own (a daemon) escapes. Linux's /proc says who is in a session.
    """
    if not Path("/proc/self/stat").exists():  # no /proc: its process group, the best there is
        with contextlib.suppress(ProcessLookupError):
            os.killpg(leader, signal.SIGKILL)
        return
    for _ in range(10):  # a process forking while we look is found on the next pass
        members = _session(leader)
        if not members:
            return
        for pid in members:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _session(sid: int) -> list[int]:
    """Live processes of session ``sid`` (zombies, already dead, are left to their parents)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # gone meanwhile
        # pid (comm) state ppid pgrp session ...; comm may hold spaces and parentheses.
        fields = text[text.rindex(")") + 2 :].split()
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found
