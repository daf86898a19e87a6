"""`kubetune status` for people and for programs, `--watch`, `--version` and plain help texts."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from kubetune import cli
from kubetune.contract import (
    SPEC_OBJECT,
    AdmissionRecord,
    LaunchRecord,
    Params,
    TrialResult,
    admission_object,
    params_object,
    result_object,
)
from kubetune.spec import parse_spec
from kubetune.store import Store, open_store

SPEC = """
name: table
objective: {metric: val_loss}
space:
  - {name: learning_rate, type: real, low: 0.0001, high: 0.1}
  - {name: optimizer, type: categorical, values: [adam, sgd]}
budget: {max_trials: 5, max_failed: 3}
"""


def launch(store: Store, index: int, params: Params) -> None:
    store.create(params_object(index), LaunchRecord(index, params, time.time(), "local").to_json())


def params_of(index: int) -> Params:
    return {"learning_rate": 0.01 * (index + 1), "optimizer": "sgd" if index % 2 else "adam"}


def record(store: Store, index: int, status: str, value: float | None, reason: str | None = None) -> None:
    metrics = {} if value is None else {"val_loss": value}
    objective_value = value if status != "failed" else None
    epochs = None if status == "failed" else 2
    result = TrialResult(index, status, params_of(index), "val_loss", objective_value, reason, metrics,  # type: ignore[arg-type]
                         wall_time_s=61.5 + index, last_epoch=epochs)  # fmt: skip
    store.create(result_object(index), result.to_json())


def finish(store: Store, index: int, status: str, value: float | None, reason: str | None = None) -> None:
    launch(store, index, params_of(index))
    record(store, index, status, value, reason)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = open_store(str(tmp_path / "store"))
    s.create(SPEC_OBJECT, parse_spec(SPEC).to_yaml().encode())
    finish(s, 0, "succeeded", 0.5)
    finish(s, 1, "failed", None, "the program exited with status 1: " + "x" * 80)
    finish(s, 2, "succeeded", 0.25)
    finish(s, 3, "pruned", 0.9, "below the median at epoch 2")
    launch(s, 4, params_of(4))
    return s


def test_the_table_is_a_summary_and_a_leaderboard_best_first(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["status", store.uri, "-o", "table"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:5] == [
        "STUDY       table",
        "OBJECTIVE   val_loss (minimize)",
        "TRIALS      4/5 finished: 2 succeeded, 1 failed, 1 pruned; 1 running",
        "BEST        trial 2: val_loss=0.25  learning_rate=0.03 optimizer=adam",
        "GPU HOURS   0.07",  # 61.5 to 64.5 s for each of the four finished, one GPU each
    ]
    groups, header, *rows = lines[6:]
    assert header.split() == [
        "TRIAL",
        "STATUS",
        "VAL_LOSS",
        "LEARNING_RATE",
        "OPTIMIZER",
        "VAL_ACCURACY",  # the CNN's columns, the objective apart
        "TEST_LOSS",
        "TEST_ACCURACY",
        "EPOCHS",
        "WALL",
        "REASON",
    ]
    assert groups.split() == ["PARAMETERS", "METRICS"]
    assert groups.index("PARAMETERS") == header.index("LEARNING_RATE")
    assert [r.split()[:2] for r in rows] == [["2", "succeeded"], ["0", "succeeded"], ["3", "pruned"],
                                             ["1", "failed"], ["4", "running"]]  # fmt: skip
    # Aligned: every cell starts where its column's header does.
    for name, cell in [("VAL_LOSS", "0.25"), ("OPTIMIZER", "adam"), ("WALL", "1m04s"), ("REASON", "")]:
        assert rows[0][header.index(name) :].startswith(cell)
    assert rows[3][header.index("REASON") :] == "the program exited with status 1: " + "x" * 23 + "..."
    assert rows[4].split() == ["4", "running", "0.05", "adam"]


def test_a_reason_is_shown_on_one_line_without_its_escape_sequences(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = open_store(str(tmp_path / "store"))
    s.create(SPEC_OBJECT, parse_spec(SPEC).to_yaml().encode())
    finish(s, 0, "failed", None, "\x1b[2J\x1b[31mboom\x1b[0m\nsecond line\x07")
    assert cli.main(["status", s.uri, "-o", "table"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert out.splitlines()[-1].endswith("[2J[31mboom[0m second line")


def test_json_when_asked_or_when_not_a_terminal(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["status", store.uri]) == 0  # captured: not a terminal
    doc = json.loads(capsys.readouterr().out)
    assert doc["trials"] == {
        "finished": 4,
        "succeeded": 2,
        "failed": 1,
        "pruned": 1,
        "total": 5,
        "running": 1,
        "queued": 0,
    }
    assert doc["running"] == []  # trial 4 runs, but has reported no epoch yet
    assert doc["best"]["index"] == 2
    assert cli.main(["status", store.uri, "-o", "json"]) == 0
    again = json.loads(capsys.readouterr().out)
    # The same, but for the GPU hours trial 4 has run since the first read.
    assert again.pop("gpu_hours") >= doc.pop("gpu_hours") and again == doc


def test_watch_refreshes_until_the_study_ends(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    done = threading.Event()

    def watch() -> None:
        assert cli.main(["status", store.uri, "--watch", "--interval", "0.05", "-o", "json"]) == 0
        done.set()

    thread = threading.Thread(target=watch)
    thread.start()
    time.sleep(0.3)
    assert not done.is_set()  # trial 4 still runs
    record(store, 4, "succeeded", 0.1)
    thread.join(10)
    assert done.is_set()
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(docs) >= 2 and docs[0]["trials"]["running"] == 1
    assert docs[-1]["trials"]["finished"] == 5 and docs[-1]["best"]["index"] == 4


def test_version_and_plain_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == "kubetune 0.1.0\n"
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert "``" not in out and "status" in out


def test_a_bad_interval_is_one_line_and_exit_2(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["status", store.uri, "--watch", "--interval", "0"]) == 2
    assert capsys.readouterr().err == "kubetune: status: argument --interval: must be more than 0, got 0\n"


def test_trials_waiting_in_a_queue_are_queued_and_the_waits_summarised(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = open_store(str(tmp_path / "store"))
    s.create(SPEC_OBJECT, parse_spec(SPEC).to_yaml().encode())
    t0 = time.time() - 600
    for index in (0, 1, 2):
        s.create(
            params_object(index), LaunchRecord(index, params_of(index), t0, "kubernetes", queue="q").to_json()
        )
    for index, wait in ((0, 120.0), (1, 300.0)):
        s.create(admission_object(index, 0), AdmissionRecord(index, 0, t0, t0 + wait).to_json())
    record(s, 0, "succeeded", 0.5)
    assert cli.main(["status", s.uri, "-o", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["trials"]["running"], doc["trials"]["queued"]) == (1, 1)
    assert doc["queue"] == {"queued": 1, "admitted": 2, "wait_s": {"median": 210.0, "max": 300.0}}
    assert {r["index"]: r["status"] for r in doc["leaderboard"]} == {
        0: "succeeded",
        1: "running",
        2: "queued",
    }
    assert cli.main(["status", s.uri, "-o", "table"]) == 0
    out = capsys.readouterr().out
    assert "1 running, 1 queued" in out
    assert (
        "QUEUE" in out and "1 waiting to be admitted; 2 admitted after a median 3m30s (longest 5m00s)" in out
    )


# --- study/NAME: the Study object's status ----------------------------------------------------


def test_a_study_object_shows_its_status_without_the_store(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    from kubetune.controller.history import read_study
    from kubetune.controller.resource import study_status
    from kubetune.controller.status import StudyObject, render

    spec, history = read_study(store)
    status = study_status(spec, history, now=time.time(), store="gs://b/table", generation=2)
    view = StudyObject({"metadata": {"name": "table", "namespace": "ml"},
                        "spec": {"objective": {"metric": "val_loss"}}, "status": status})  # fmt: skip

    lines = render(view, "table").splitlines()
    assert lines[0].split() == ["STUDY", "table", "(Running)"] and not view.ended
    assert "4/5 finished: 2 succeeded, 1 failed, 1 pruned, 1 running, 0 queued" in lines[1]
    assert "trial 2: val_loss=0.25" in lines[2] and "optimizer=adam" in lines[2]
    assert any(line.split()[:3] == ["RUNNING", "True", "(TrialsRunning):"] for line in lines)
    assert lines[-1].split()[:2] == ["STORE", "gs://b/table"]
    assert json.loads(render(view, "json"))["best"]["index"] == 2
    # What a user may have written to it by hand is shown, never a traceback.
    hand_made = {"phase": "Completed", "conditions": [{}], "best": {"index": 1, "value": None}}
    odd = StudyObject({"metadata": {"name": "x"}, "status": hand_made})
    assert odd.ended and "BEST" in render(odd, "table")


def test_study_name_reads_the_cluster_and_a_namespace_needs_one(
    store: Store, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert cli.main(["status", store.uri, "-n", "ml"]) == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith("--namespace is for a Study object (study/NAME), not a store")
    )
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    assert cli.main(["status", "study/table"]) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("kubetune: kubernetes: no usable credentials") and "\n" not in err
