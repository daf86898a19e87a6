"""``kubetune trial exec``: run the user's program as one trial, collect its metrics, write once.

The program gets its parameters two ways: substituted into its arguments
(``{name}`` placeholders of ``trial.command``; also ``{trial_index}`` and
``{metrics_file}``) and as environment variables, each name upper-cased
(``learning_rate`` -> ``LEARNING_RATE``), besides ``KUBETUNE_TRIAL_INDEX``
and ``KUBETUNE_METRICS_FILE``.

It reports metrics without importing kubetune, in metrics lines::

    kubetune: epoch=3 val_loss=0.41 accuracy=0.88

on its stdout (other lines are its own output, passed through), or the same
lines, the ``kubetune:`` prefix optional, appended to the file
``$KUBETUNE_METRICS_FILE``. Each line holds ``name=number`` pairs; a line
with ``epoch=N`` (N counting up from 1) is that epoch's report, written as the
trial's epoch record, so a stopping rule can prune it. A metric's last value
is its final one. The trial fails, with the reason in its record, when the
program exits non-zero, prints a malformed metrics line or a non-finite
value, or never reports the objective. When the controller asks the trial to
stop, the program is terminated and the trial recorded as pruned.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import platform
import queue
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from kubetune import __version__
from kubetune.contract import Params, StopRequest, TrialRequest, TrialResult, failed_result
from kubetune.kinds import PROGRAM, ProgramSettings
from kubetune.kinds import program as kind
from kubetune.store import Store
from kubetune.trial.epochs import EpochReporter

PREFIX = "kubetune:"
POLL_S = 0.2  # how often the metrics file is read while the program runs
# A stop request is also looked for between epochs, at most this often: a
# pruned trial gives its GPU back within seconds, at a bounded cost in reads.
STOP_CHECK_S = 5.0
TERMINATE_GRACE_S = 10.0  # SIGTERM, then this long, then SIGKILL
STDERR_TAIL = 5  # lines of the program's stderr kept for a failure's reason
# Memory bounds, whatever the program writes: one line, the lines not yet
# handled (the program blocks on its pipe when these are full), one read of
# the metrics file.
LINE_MAX = 64 * 1024
QUEUE_MAX = 1024
TAIL_READ = 1024 * 1024
_PR_SET_PDEATHSIG = 1


class BadMetrics(Exception):
    """A metrics line that does not follow the format; the message says how."""


@dataclass
class Metrics:
    """What the program reported so far: the final values, and the last epoch's."""

    final: dict[str, float] = field(default_factory=dict)
    epoch: int = 0

    def feed(self, text: str, where: str) -> tuple[int, dict[str, float]] | None:
        """Parse one metrics line (without prefix); (epoch, metrics) when it reports an epoch."""
        pairs = text.split()
        if not pairs:
            raise BadMetrics(f"{where}: a metrics line with no name=value pairs")
        values: dict[str, float] = {}
        epoch: int | None = None
        for pair in pairs:
            name, eq, raw = pair.partition("=")
            if not eq or not kind.METRIC_NAME_RE.match(name):
                raise BadMetrics(f"{where}: {pair!r} is not name=number")
            if name == "epoch":
                epoch = self._epoch(raw, where)
                continue
            values[name] = _number(name, raw, where)
        if not values:
            raise BadMetrics(f"{where}: reports no metric")
        self.final.update(values)
        return None if epoch is None else (epoch, values)

    def _epoch(self, raw: str, where: str) -> int:
        if not raw.isdigit() or int(raw) <= self.epoch:
            raise BadMetrics(f"{where}: epoch={raw} must be an integer above the last ({self.epoch})")
        self.epoch = int(raw)
        return self.epoch


def _number(name: str, raw: str, where: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise BadMetrics(f"{where}: {name}={raw!r} is not a number") from None
    if not math.isfinite(value):
        raise BadMetrics(f"{where}: {name} is {raw}")
    return value


def command_argv(command: str, params: Params, builtins: dict[str, str]) -> list[str]:
    """The program's argv: ``command`` split like a shell, each token's placeholders filled."""
    values = {**params, **builtins}
    return [token.format_map(values) for token in shlex.split(command)]


def program_env(params: Params, builtins: dict[str, str]) -> dict[str, str]:
    env = {kind.env_name(name): str(value) for name, value in params.items()}
    return {**os.environ, **env, kind.TRIAL_INDEX_ENV: builtins[kind.TRIAL_INDEX],
            kind.METRICS_FILE_ENV: builtins[kind.METRICS_FILE]}  # fmt: skip


def run(req: TrialRequest, store: Store, started: float, log: Any) -> TrialResult:
    """Run the program of ``req`` to its end (or the controller's stop) and make its record."""
    settings: ProgramSettings = req.settings
    with tempfile.TemporaryDirectory(prefix="kubetune-trial-") as tmp:
        metrics_file = Path(tmp) / "metrics.txt"
        metrics_file.touch()
        builtins = {kind.TRIAL_INDEX: str(req.index), kind.METRICS_FILE: str(metrics_file)}
        try:
            argv = command_argv(settings.command, req.params, builtins)
        except (KeyError, ValueError, IndexError) as exc:  # e.g. {lr:d} for a float
            return _record(req, started, "failed", reason=f"cannot fill the command's placeholders: {exc!r}")
        log.info("running", argv=argv, params=req.params)
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=program_env(req.params, builtins),
                preexec_fn=_own_group_dying_with_us,
            )
        except OSError as exc:
            return _record(req, started, "failed", reason=f"cannot run {argv[0]!r}: {exc.strerror}")
        return _Session(req, store, proc, metrics_file, started, log).run()


def _own_group_dying_with_us() -> None:
    # Its own process group, so stopping it stops what it started; in our
    # session still, so the local launcher finds it and its orphans; killed
    # with us, like a container with its pod, so no program trains on unattended.
    os.setpgid(0, 0)
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class _Session:
    """One running program: its output read line by line, its metrics reported as they come."""

    def __init__(
        self, req: TrialRequest, store: Store, proc: subprocess.Popen[bytes], metrics_file: Path,
        started: float, log: Any,
    ) -> None:  # fmt: skip
        self.req = req
        self.proc = proc
        self.started = started
        self.log = log
        self.reporter = EpochReporter(store, req.index, PROGRAM.bounds)
        self.metrics = Metrics()
        self.epoch_times: list[float] = []
        self.last_epoch_at = self.stop_checked = time.monotonic()
        self.lines: queue.Queue[tuple[str, str | None]] = queue.Queue(maxsize=QUEUE_MAX)
        self.stderr_tail: deque[str] = deque(maxlen=STDERR_TAIL)
        self.file = _Tail(metrics_file)
        self.file_lines = 0
        self.stdout_lines = 0
        assert proc.stdout is not None and proc.stderr is not None
        for name, stream, echo in (("stdout", proc.stdout, sys.stdout), ("stderr", proc.stderr, sys.stderr)):
            threading.Thread(target=self._pump, args=(name, stream, echo), daemon=True).start()

    def _pump(self, name: str, stream: IO[bytes], echo: IO[str]) -> None:
        for raw, cut in bounded_lines(stream):
            line = raw.decode(errors="replace").rstrip("\r")
            # The trial's log keeps the program's output, a line's first LINE_MAX bytes at most.
            print(line + (f" [... {cut} bytes cut]" if cut else ""), file=echo, flush=True)
            self.lines.put((name, line))  # blocks while the queue is full: the program waits for us
        self.lines.put((name, None))

    def run(self) -> TrialResult:
        open_streams = 2
        try:
            while open_streams:
                with contextlib.suppress(queue.Empty):
                    name, line = self.lines.get(timeout=POLL_S)
                    if line is None:
                        open_streams -= 1
                    elif name == "stdout":
                        self.stdout_lines += 1
                        self._stdout(line)
                    else:
                        self.stderr_tail.append(line)
                self._file(self.file.lines())
                self._check_stop()
            code = self.proc.wait()
            self._file(self.file.lines(final=True))
        except BadMetrics as exc:
            self._terminate()
            return self._end("failed", f"malformed metrics: {exc}")
        except _Stopped as stop:
            self._terminate()
            return self._end("pruned", stop.request.reason)
        except BaseException:  # SIGTERM (the pod evicted, the study stopped), Ctrl-C: it goes with us
            self._terminate()
            raise
        finally:
            self.file.close()
        return self._outcome(code)

    def _check_stop(self) -> None:
        if time.monotonic() - self.stop_checked < STOP_CHECK_S:
            return
        self.stop_checked = time.monotonic()
        stop = self.reporter.stop_requested()
        if stop is not None:
            raise _Stopped(stop)

    def _stdout(self, line: str) -> None:
        if line.startswith(PREFIX):
            self._report(line[len(PREFIX) :], f"stdout line {self.stdout_lines}")

    def _file(self, lines: list[str]) -> None:
        for line in lines:
            self.file_lines += 1
            if line.strip():
                self._report(line.removeprefix(PREFIX), f"{kind.METRICS_FILE_ENV} line {self.file_lines}")

    def _report(self, text: str, where: str) -> None:
        epoch = self.metrics.feed(text, where)
        if epoch is None:
            return
        now = time.monotonic()
        self.epoch_times.append(now - self.last_epoch_at)
        self.last_epoch_at = now
        stop = self.reporter.report(*epoch)
        self.stop_checked = now
        if stop is not None:
            raise _Stopped(stop)

    def _outcome(self, code: int) -> TrialResult:
        if code != 0:
            how = f"killed by signal {-code}" if code < 0 else f"exited with status {code}"
            last = f": {self.stderr_tail[-1]}" if self.stderr_tail else ""
            return self._end("failed", f"the program {how}{last}")
        objective = self.req.objective
        if objective not in self.metrics.final:
            reported = ", ".join(sorted(self.metrics.final)) or "none"
            return self._end("failed", f"the objective metric {objective!r} was never reported "
                             f"(metrics reported: {reported})")  # fmt: skip
        return self._end("succeeded", None)

    def _end(self, status: str, reason: str | None) -> TrialResult:
        value = self.metrics.final.get(self.req.objective)
        return _record(
            self.req,
            self.started,
            status,
            reason=reason,
            objective_value=None if status == "failed" else value,
            metrics=dict(self.metrics.final),
            epoch_times_s=self.epoch_times,
            last_epoch=self.reporter.last_epoch,
            epoch_metrics=self.reporter.curve,
        )

    def _terminate(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(TERMINATE_GRACE_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


class _Stopped(Exception):
    def __init__(self, request: StopRequest) -> None:
        super().__init__(request.reason)
        self.request = request


class _Tail:
    """The complete lines appended to a file since the last read, from one open file.

    Bounded: at most LINE_MAX bytes of one line are kept (the rest is read and
    dropped), at most TAIL_READ bytes read per call.
    """

    def __init__(self, path: Path) -> None:
        self.file = path.open("rb")
        self.partial = b""
        self.overflow = False  # dropping the rest of a line longer than LINE_MAX

    def lines(self, final: bool = False) -> list[str]:
        """What was appended since; ``final``: all of it, and a last line without its newline."""
        complete: list[bytes] = []
        while self._read(complete) and final:
            pass
        if final and self.partial:
            complete.append(self.partial)
            self.partial = b""
        return [line.decode(errors="replace").rstrip("\r") for line in complete]

    def _read(self, complete: list[bytes]) -> bool:
        """Read one chunk into ``complete``; whether there was any."""
        data = chunk = self.file.read(TAIL_READ)
        while data:
            head, newline, data = data.partition(b"\n")
            if not self.overflow:
                self.partial += head[: LINE_MAX - len(self.partial)]
                self.overflow = len(self.partial) >= LINE_MAX and not newline
            if newline:
                complete.append(self.partial)
                self.partial, self.overflow = b"", False
        return bool(chunk)

    def close(self) -> None:
        self.file.close()


def bounded_lines(stream: IO[bytes], limit: int = 0) -> Iterator[tuple[bytes, int]]:
    """Each line of ``stream`` without its newline, cut to ``limit`` bytes (LINE_MAX by default),
    with the number of bytes cut: a line of any length is read in bounded memory."""
    limit = limit or LINE_MAX
    while head := stream.readline(limit):
        if head.endswith(b"\n"):
            yield head[:-1], 0
            continue
        cut = 0
        while (rest := stream.readline(limit)) and not rest.endswith(b"\n"):
            cut += len(rest)
        yield head, cut + max(len(rest) - 1, 0)


def _record(req: TrialRequest, started: float, status: str, reason: str | None, **extra: Any) -> TrialResult:
    finished = time.time()
    common: dict[str, Any] = {"wall_time_s": finished - started, "started_at": started,
                              "finished_at": finished, "versions": _versions(), **extra}  # fmt: skip
    if status == "failed":
        common.pop("objective_value", None)
        return failed_result(req.index, req.params, req.objective, reason or "failed", **common)
    return TrialResult(
        index=req.index, status=status, params=req.params, objective=req.objective,  # type: ignore[arg-type]
        reason=reason, **common,
    )  # fmt: skip


def _versions() -> dict[str, str]:
    return {"python": platform.python_version(), "kubetune": __version__}
