"""Any program as a trial: `kubetune trial exec` runs real programs, and a spec that names one.

The programs are small Python scripts run by this interpreter; the wrapper
runs in-process through the CLI, as a Job's `kubetune trial exec` would.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from kubetune import cli
from kubetune.contract import (
    EXIT_OK,
    EXIT_TRIAL_FAILED,
    EpochRecord,
    StopRequest,
    TrialRequest,
    TrialResult,
    epoch_object,
    parse_trial_args,
    result_object,
    stop_object,
    trial_command,
)
from kubetune.kinds import PROGRAM, CnnSettings, ProgramSettings
from kubetune.kubernetes.job import JobSettings, build_job
from kubetune.spec import parse_spec
from kubetune.store import open_store
from kubetune.trial import program
from tests import REPO


def run_program(
    tmp_path: Path, body: str, params: dict[str, Any], objective: str = "score", args: str = ""
) -> tuple[int, TrialResult, Path]:
    """Run ``body`` as trial 0's program; its exit code, its record and the store folder."""
    script = tmp_path / "prog.py"
    script.write_text(textwrap.dedent(body))
    store = tmp_path / "store"
    command = f"{sys.executable} {script} {args}"
    req = TrialRequest(str(store), "prog", 0, params, ProgramSettings(command=command), objective)
    rc = cli.main(trial_command(req, PROGRAM.subcommand)[1:])
    return rc, TrialResult.from_json((store / result_object(0)).read_bytes()), store


def epochs(store: Path) -> list[EpochRecord]:
    return [EpochRecord.from_json(p.read_bytes()) for p in sorted((store / "trials/000000/epochs").glob("*"))]


def test_params_reach_args_and_env_and_stdout_metrics_come_back(tmp_path: Path) -> None:
    body = """
        import os, sys
        x, n, mode = float(sys.argv[1]), int(sys.argv[2].removeprefix("--n=")), sys.argv[3]
        print("starting")  # ordinary output, not a metrics line
        print(f"kubetune: epoch=1 x={x} n={n} fast={int(mode == 'fast')}")
        print(f"kubetune: epoch=2 env_x={os.environ['X']} env_n={os.environ['N']} "
              f"env_fast={int(os.environ['MODE'] == 'fast')} index={os.environ['KUBETUNE_TRIAL_INDEX']}")
        print(f"kubetune: score={x * n}")
    """
    params = {"x": 0.125, "n": 3, "mode": "fast"}
    rc, result, store = run_program(tmp_path, body, params, args="{x} --n={n} {mode}")
    assert rc == EXIT_OK
    assert result.status == "succeeded" and result.params == params
    assert result.objective_value == 0.375 and result.last_epoch == 2
    assert result.metrics == {"x": 0.125, "n": 3, "fast": 1, "env_x": 0.125, "env_n": 3, "env_fast": 1,
                              "index": 0, "score": 0.375}  # fmt: skip
    assert [(e.epoch, e.metrics) for e in epochs(store)] == [
        (1, {"x": 0.125, "n": 3, "fast": 1}),
        (2, {"env_x": 0.125, "env_n": 3, "env_fast": 1, "index": 0}),
    ]
    assert len(result.epoch_times_s) == 2


def test_metrics_written_to_the_file_come_back(tmp_path: Path) -> None:
    body = """
        import os, sys
        assert sys.argv[1] == os.environ["KUBETUNE_METRICS_FILE"]
        with open(sys.argv[1], "a") as f:
            f.write("epoch=1 loss=0.5\\n")
            f.write("kubetune: epoch=2 loss=0.25\\n\\n")
            f.write("val_loss=0.3")  # the last line needs no newline
        print("kubetune: accuracy=0.9")  # both ways at once
    """
    rc, result, store = run_program(tmp_path, body, {"lr": 0.1}, objective="val_loss", args="{metrics_file}")
    assert rc == EXIT_OK
    assert result.objective_value == 0.3
    assert result.metrics == {"loss": 0.25, "val_loss": 0.3, "accuracy": 0.9}
    assert [(e.epoch, e.metrics) for e in epochs(store)] == [(1, {"loss": 0.5}), (2, {"loss": 0.25})]


FAILURES = [
    ("import sys; sys.exit('out of memory')", "the program exited with status 1: out of memory"),
    ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", "the program killed by signal 9"),
    ("pass", "the objective metric 'score' was never reported (metrics reported: none)"),
    ("print('kubetune: loss=1')", "the objective metric 'score' was never reported (metrics reported: loss)"),
    ("print('kubetune: score=abc')", "malformed metrics: stdout line 1: score='abc' is not a number"),
    ("print('kubetune: score')", "malformed metrics: stdout line 1: 'score' is not name=number"),
    ("print('kubetune:')", "malformed metrics: stdout line 1: a metrics line with no name=value pairs"),
    ("print('hi'); print('kubetune: score=nan')", "malformed metrics: stdout line 2: score is nan"),
    ("print('kubetune: epoch=2 score=1'); print('kubetune: epoch=1 score=2')",
     "malformed metrics: stdout line 2: epoch=1 must be an integer above the last (2)"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "reason"), FAILURES, ids=[r for _, r in FAILURES])
def test_a_bad_program_gives_a_failed_record_with_its_reason(tmp_path: Path, body: str, reason: str) -> None:
    rc, result, _ = run_program(tmp_path, body, {"x": 1})
    assert rc == EXIT_TRIAL_FAILED
    assert result.status == "failed" and result.objective_value is None
    assert result.reason == reason


def test_a_program_that_cannot_start_fails_its_trial(tmp_path: Path) -> None:
    store = tmp_path / "store"
    req = TrialRequest(str(store), "p", 0, {"x": 1}, ProgramSettings(command="/nonexistent/train {x}"), "s")
    assert cli.main(trial_command(req, PROGRAM.subcommand)[1:]) == EXIT_TRIAL_FAILED
    result = TrialResult.from_json((store / result_object(0)).read_bytes())
    assert result.reason == "cannot run '/nonexistent/train': No such file or directory"


def test_a_placeholder_that_cannot_be_filled_fails_the_trial(tmp_path: Path) -> None:
    # The spec checks names; a format spec is checked only against the value it meets.
    rc, result, _ = run_program(tmp_path, "print('kubetune: score=1')", {"lr": 0.5}, args="--lr {lr:d}")
    assert rc == EXIT_TRIAL_FAILED
    assert result.reason is not None
    assert result.reason.startswith("cannot fill the command's placeholders: ValueError(")


def test_a_removed_metrics_file_is_no_error(tmp_path: Path) -> None:
    body = """
        import os
        os.remove(os.environ["KUBETUNE_METRICS_FILE"])
        print("kubetune: score=1")
    """
    rc, result, _ = run_program(tmp_path, body, {"x": 1})
    assert (rc, result.status, result.objective_value) == (EXIT_OK, "succeeded", 1)


def test_a_stop_request_terminates_the_program_and_prunes_the_trial(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    store.create(stop_object(0), StopRequest(0, "below the median at epoch 1", time.time()).to_json())
    body = """
        import os, pathlib, time
        pathlib.Path(os.environ["PIDFILE"]).write_text(str(os.getpid()))
        print("kubetune: epoch=1 score=0.5", flush=True)
        time.sleep(120)
        print("kubetune: epoch=2 score=0.9")
    """
    os.environ["PIDFILE"] = str(tmp_path / "pid")
    try:
        started = time.monotonic()
        rc, result, _ = run_program(tmp_path, body, {"x": 1})
    finally:
        del os.environ["PIDFILE"]
    assert time.monotonic() - started < 30  # terminated, not waited for
    assert rc == EXIT_OK
    assert result.status == "pruned"
    assert result.reason == "below the median at epoch 1"  # the rule's reason, as the CNN records it
    assert result.last_epoch == 1 and result.objective_value == 0.5
    with pytest.raises(ProcessLookupError):
        os.kill(int((tmp_path / "pid").read_text()), 0)
    assert (tmp_path / "store" / epoch_object(0, 1)).exists()


def test_a_stop_request_is_heard_between_epochs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A program in a long epoch gives its GPU back within a check interval, not at its next report.
    monkeypatch.setattr(program, "STOP_CHECK_S", 0.2)
    store = tmp_path / "store"
    body = f"""
        import pathlib, time
        print("kubetune: epoch=1 score=0.5", flush=True)
        epoch = pathlib.Path({str(store / epoch_object(0, 1))!r})
        while not epoch.exists():
            time.sleep(0.05)
        pathlib.Path({str(tmp_path / "reported")!r}).touch()
        time.sleep(120)
    """
    stopper = threading.Thread(target=_stop_when_reported, args=(tmp_path,))
    stopper.start()
    started = time.monotonic()
    rc, result, _ = run_program(tmp_path, body, {"x": 1})
    stopper.join()
    assert time.monotonic() - started < 30
    assert (rc, result.status, result.reason, result.last_epoch) == (EXIT_OK, "pruned", "study ended", 1)


def _stop_when_reported(tmp_path: Path) -> None:
    deadline = time.monotonic() + 30
    while not (tmp_path / "reported").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    open_store(str(tmp_path / "store")).create(
        stop_object(0), StopRequest(0, "study ended", time.time()).to_json()
    )


def test_placeholders_take_format_specs_and_literal_braces(tmp_path: Path) -> None:
    body = """
        import sys
        if sys.argv[1:] != ["--lr=0.00", "{json}", "trial-0"]:
            sys.exit(f"argv {sys.argv[1:]}")
        print("kubetune: score=1")
    """
    rc, result, _ = run_program(
        tmp_path, body, {"lr": 0.001}, args="--lr={lr:.2f} {{json}} trial-{trial_index}"
    )
    assert (rc, result.status, result.reason) == (EXIT_OK, "succeeded", None)


def test_the_trial_command_round_trips_and_the_cnn_s_is_unchanged() -> None:
    settings = ProgramSettings(command="python3 train.py --x {x}", image="registry/me:1")
    req = TrialRequest("gs://b/p", "s", 4, {"x": 0.5, "mode": "a"}, settings, "score")
    argv = trial_command(req, PROGRAM.subcommand)
    assert argv[:3] == ["kubetune", "trial", "exec"]
    assert parse_trial_args(argv[3:], PROGRAM) == req
    cnn = trial_command(TrialRequest("gs://b/p", "s", 4, {"learning_rate": 0.1}, CnnSettings(), "val_loss"))
    assert cnn[:3] == ["kubetune", "trial", "--store"]


def test_a_program_study_s_job_runs_its_own_image() -> None:
    settings = ProgramSettings(command="python3 train.py", image="registry/me:1")
    req = TrialRequest("gs://b/p", "s", 4, {"x": 0.5}, settings, "score")
    [container] = build_job(req, JobSettings(image="kubetune-trial:1"), namespace="ml")["spec"]["template"][
        "spec"
    ]["containers"]
    assert container["image"] == "registry/me:1"
    assert container["command"] == trial_command(req, PROGRAM.subcommand)
    req_default = TrialRequest("gs://b/p", "s", 4, {"x": 0.5}, ProgramSettings(command="t"), "score")
    [container] = build_job(req_default, JobSettings(image="kubetune-trial:1"), namespace="ml")["spec"][
        "template"
    ]["spec"]["containers"]
    assert container["image"] == "kubetune-trial:1"


X = "{name: x, type: real, low: 0, high: 1}"
BAD_SPECS = [
    ("command: 'train --lr {lr}'", f"space: [{X}]", "goal: minimize",
     "kubetune: trial.command: placeholder {lr} names no space parameter; known: x, trial_index, "
     "metrics_file"),
    ("command: 'train {x}'", f"space: [{X}]", "",
     "kubetune: objective.goal: required for metric 'score' (maximize or minimize)"),
    ("command: 'train {x}'", f"space: [{X}, {X.replace('x', 'X')}]", "goal: minimize",
     "kubetune: space[1].name: 'X' clashes with 'x' (environment variable X)"),
]  # fmt: skip


@pytest.mark.parametrize(("trial", "space", "goal", "line"), BAD_SPECS, ids=[b[3] for b in BAD_SPECS])
def test_a_bad_program_spec_is_one_line_exit_2_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], trial: str, space: str, goal: str, line: str
) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(f"trial: {{kind: program, {trial}}}\n{space}\nobjective: {{metric: score, {goal}}}\n")
    store = tmp_path / "store"
    assert cli.main(["run", str(spec), "--store", str(store)]) == 2
    assert capsys.readouterr().err == line + "\n"
    assert not store.exists()


def test_records_of_a_program_round_trip_without_bounds(tmp_path: Path) -> None:
    # A program's metrics are its own: no bound applies (accuracy may be a percentage).
    rc, result, _ = run_program(tmp_path, "print('kubetune: score=87.5 accuracy=87.5')", {"x": 1})
    assert rc == EXIT_OK
    assert json.loads(result.to_json(PROGRAM.bounds))["metrics"]["accuracy"] == 87.5


def test_the_readme_points_kubetune_at_a_script_in_under_ten_lines() -> None:
    readme = (REPO / "README.md").read_text()
    block = readme.split("## Tune your own script", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    assert len(block.splitlines()) < 10
    spec = parse_spec(block)
    assert spec.kind is PROGRAM and [d.name for d in spec.space] == ["lr", "opt"]


def test_a_killed_wrapper_takes_its_program_with_it(tmp_path: Path) -> None:
    # The local launcher stops a trial with SIGKILL: its program must not train on unattended.
    script = tmp_path / "prog.py"
    script.write_text("import os, pathlib, sys, time\n"
                      "pathlib.Path(sys.argv[1]).write_text(str(os.getpid()))\n"
                      "time.sleep(120)\n")  # fmt: skip
    pidfile = tmp_path / "pid"
    settings = ProgramSettings(command=f"{sys.executable} {script} {pidfile}")
    argv = trial_command(
        TrialRequest(str(tmp_path / "store"), "p", 0, {"x": 1}, settings, "score"), PROGRAM.subcommand
    )
    wrapper = subprocess.Popen([str(Path(sys.executable).parent / "kubetune"), *argv[1:]],
                               env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    deadline = time.monotonic() + 30
    while not (pidfile.exists() and pidfile.read_text()):
        assert time.monotonic() < deadline and wrapper.poll() is None
        time.sleep(0.05)
    wrapper.kill()
    wrapper.wait()
    pid = int(pidfile.read_text())
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    pytest.fail("the program outlived its wrapper")


def wrapper_peak_rss_mb(tmp_path: Path, body: str) -> tuple[int, float, TrialResult]:
    """Run ``body`` as trial 0's program under a `kubetune trial exec` process of its own; that
    process's exit code and peak RSS (the program's own memory apart), and the record."""
    script = tmp_path / "prog.py"
    script.write_text(textwrap.dedent(body))
    store = tmp_path / "store"
    req = TrialRequest(
        str(store), "p", 0, {"x": 1}, ProgramSettings(command=f"{sys.executable} {script}"), "score"
    )
    # VmHWM, not ru_maxrss: exec keeps the larger of the two, and the child of a pytest that
    # has grown to 1.3 GB would report that.
    code = ("import sys\nfrom pathlib import Path\nfrom kubetune import cli\nrc = cli.main(sys.argv[1:])\n"
            "status = Path('/proc/self/status').read_text().splitlines()\n"
            "hwm = [line for line in status if line.startswith('VmHWM:')]\n"
            "print('maxrss', hwm[0].split()[1], file=sys.stderr)\nsys.exit(rc)")  # fmt: skip
    argv = [sys.executable, "-c", code, *trial_command(req, PROGRAM.subcommand)[1:]]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    maxrss_kb = int(proc.stderr.rsplit("maxrss ", 1)[1].split()[0])
    return proc.returncode, maxrss_kb / 1024, TrialResult.from_json((store / result_object(0)).read_bytes())


def test_an_output_line_of_any_length_is_read_in_bounded_memory(tmp_path: Path) -> None:
    # Unbounded, a 200 MB line took the wrapper 814 MB; now a line's first 64 KiB are kept.
    code, rss_mb, result = wrapper_peak_rss_mb(tmp_path, """
        import sys
        block = "x" * (1 << 20)
        for _ in range(150):
            sys.stdout.write(block)
        sys.stdout.write("\\nkubetune: score=0.5\\n")
    """)  # fmt: skip
    assert code == EXIT_OK and result.objective_value == 0.5
    assert rss_mb < 120, f"the wrapper peaked at {rss_mb:.0f} MB for a 150 MB line"


def test_a_huge_stderr_line_makes_a_small_record(tmp_path: Path) -> None:
    code, _, result = wrapper_peak_rss_mb(tmp_path, """
        import sys
        sys.stderr.write("e" * 20_000_000 + "\\n")
        sys.exit(1)
    """)  # fmt: skip
    assert code == EXIT_TRIAL_FAILED and result.failed
    assert (tmp_path / "store" / result_object(0)).stat().st_size < 10_000
    assert result.reason is not None and result.reason.startswith("the program exited with status 1: eee")


def test_the_metrics_file_is_opened_once_however_many_lines_come(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[str] = []
    real_open = Path.open

    def counting_open(self: Path, *args: Any, **kwargs: Any) -> Any:
        if self.name == "metrics.txt":
            opened.append(str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", counting_open)
    rc, result, _ = run_program(tmp_path, """
        import os
        for i in range(2000):
            print(f"line {i}")
        with open(os.environ["KUBETUNE_METRICS_FILE"], "a") as f:
            f.write("score=0.25\\n")
    """, {"x": 1})  # fmt: skip
    assert rc == EXIT_OK and result.objective_value == 0.25
    assert len(opened) == 1


@pytest.mark.parametrize(
    ("data", "lines"),
    [
        (b"a" * 10 + b"\nnext\n", [(b"a" * 10, 0), (b"next", 0)]),
        (b"b" * 100 + b"\nnext\n", [(b"b" * 16, 84), (b"next", 0)]),
        (b"c" * 16 + b"\nnext\n", [(b"c" * 16, 0), (b"next", 0)]),
        (b"d" * 20, [(b"d" * 16, 4)]),  # the last line, without its newline
    ],
)
def test_bounded_lines_keep_the_start_and_count_the_rest(data: bytes, lines: list[tuple[bytes, int]]) -> None:
    assert list(program.bounded_lines(io.BytesIO(data), 16)) == lines
