"""Small process and polling helpers shared by the control plane and the kubelet."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
S = TypeVar("S", bound="Service")

_PR_SET_PDEATHSIG = 1


class Service:
    """A context manager that start()s on enter, stop()s on exit, and stops a failed start."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self: S) -> S:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def free_ports(count: int) -> list[int]:
    """count distinct TCP ports on 127.0.0.1 that were free a moment ago.

    The sockets stay open until all are picked, so the kernel cannot hand the
    same port out twice; another process can still take one before it is used,
    which callers handle by retrying (see ControlPlane.start).
    """
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def free_port() -> int:
    return free_ports(1)[0]


def _die_with_parent() -> None:
    # Runs in the child between fork and exec. If the test process is killed
    # outright (SIGKILL, OOM) the finalisers never run; PDEATHSIG makes the
    # kernel kill the child too, so nothing is left listening on loopback.
    # Caveat: the signal fires when the *thread* that forked exits, so callers
    # spawn from a thread that outlives the child.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def spawn(
    argv: Sequence[str],
    log_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    append: bool = False,
) -> subprocess.Popen[bytes]:
    """Start argv in its own process group with stdout+stderr going to log_path."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab" if append else "wb") as log:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,  # own process group: killpg reaches grandchildren
            preexec_fn=_die_with_parent,
        )


def signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    """Send sig to the process group led by proc (ignoring an already-gone group)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def stop_group(proc: subprocess.Popen[bytes], grace_s: float) -> int:
    """SIGTERM the group, wait up to grace_s, then SIGKILL it. Returns the exit code."""
    if proc.poll() is None:
        signal_group(proc, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace_s)
    # The leader may be gone while children it forked still hold the group.
    signal_group(proc, signal.SIGKILL)
    return proc.wait(timeout=30)


def tail(path: Path, lines: int = 40) -> str:
    """Last lines of a log file, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"<{path} unreadable>"
    return f"--- tail of {path} ---\n" + "\n".join(text.splitlines()[-lines:])
