"""Any bytes in any record: one trial's failure at most, never a study's.

A property-based suite (Hypothesis): each kind of object a trial or a crashed
process can leave in the store is overwritten with arbitrary JSON (the real
record with fields replaced, dropped or added) or arbitrary bytes, and every
reader must then either see the record as it is or see exactly that trial as
failed with a reason, with every other trial unchanged: ``read_study``,
``kubetune status`` (table and JSON), ``kubetune best``, ``kubetune report``,
and a resumed study. The controller's own records (``params.json``,
``study.yaml``) may instead stop every command with one line naming them.

CI runs a bounded number of examples; ``HYPOTHESIS_PROFILE=thorough`` runs
many more (README, "Development").
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubetune import cli
from kubetune.contract import (
    SPEC_OBJECT,
    LaunchRecord,
    TrialResult,
    admission_object,
    attempt_object,
    epoch_object,
    params_object,
    result_object,
    stop_object,
)
from kubetune.controller import confirmation, report, status
from kubetune.controller.history import read_study
from kubetune.controller.study import Study
from kubetune.errors import KubetuneError
from kubetune.spec import parse_spec
from kubetune.store import open_store
from tests.synthetic import InProcessLauncher

settings.register_profile("ci", max_examples=20, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
settings.register_profile("thorough", max_examples=1000, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

SPEC = parse_spec(
    """
    name: fuzz
    optimizer: {n_initial_points: 3, random_state: 1}
    budget: {max_trials: 8, max_failed: 8}
    trial: {epochs: 2}
    """
)
VICTIM = 1  # the finished trial whose records are overwritten
RUNNING = 6  # launched, one epoch reported, no result: what a killed controller leaves

SPECIAL_BYTES = [b"", b"\x00", b"\xff\xfe\xfd", b"{", b"[" * 100_000, b'{"index": ' + b"9" * 5000 + b"}",
                 b'{"index": 1e999}', b"null", b"NaN", b'"a string"', b"1"]  # fmt: skip
SPECIAL_VALUES: list[Any] = [None, True, -1, 0, 2**64, -(2**63), 1e308, -0.0, float("nan"), float("inf"), "",
                             "\x1b[31mred\x1b[0m", "x" * 5000, [], {}, [1.0], {"a": {"b": []}}]  # fmt: skip
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(SPECIAL_VALUES),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A study of 6 finished trials (2 epochs each) and one still running, in a local store."""
    root = tmp_path_factory.mktemp("baseline")
    store = open_store(str(root))
    Study(replace(SPEC, budget=replace(SPEC.budget, max_trials=RUNNING)), store,
          InProcessLauncher(store, epochs=2), poll_s=0.0).run()  # fmt: skip
    launch = LaunchRecord(RUNNING, {"learning_rate": 0.002, "num_dense_layers": 2, "num_dense_nodes": 40},
                          time.time(), "synthetic", queue="gpu-queue")  # fmt: skip
    store.create(params_object(RUNNING), launch.to_json())
    store.create(
        epoch_object(RUNNING, 1), b'{"index": 6, "epoch": 1, "metrics": {"val_accuracy": 0.8}, "at": 1.0}'
    )
    store.create(stop_object(VICTIM), b'{"index": 1, "reason": "asked", "at": 1.0}')
    store.create(
        admission_object(RUNNING, 0), b'{"index": 6, "attempt": 0, "queued_at": 1.0, "admitted_at": 2.0}'
    )
    store.create(attempt_object(VICTIM, 0), json.dumps({"index": 1, "attempt": 0, "cause": "evicted",
                 "reason": "pod evicted", "started_at": 1.0, "ended_at": 2.0}).encode())  # fmt: skip
    return root


@contextlib.contextmanager
def copy_of(baseline: Path, name: str, payload: bytes) -> Iterator[Path]:
    """A copy of the baseline store with ``name`` holding ``payload``, removed afterwards."""
    root = baseline.parent / f"example-{os.getpid()}-{time.monotonic_ns()}"
    shutil.copytree(baseline, root)
    try:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(payload)
        yield root
    finally:
        shutil.rmtree(root)


def payloads(original: bytes) -> st.SearchStrategy[bytes]:
    """The record with one field replaced, dropped or added; any JSON; any bytes; the record cut short."""
    doc = json.loads(original)
    keys = st.sampled_from([*doc, "schema", "unknown_field"])
    replaced = st.tuples(keys, json_values).map(lambda kv: _dumps({**doc, kv[0]: kv[1]}))
    dropped = keys.map(lambda k: _dumps({f: v for f, v in doc.items() if f != k}))
    newer = st.sampled_from(["2.0", "1.9", 3, "x", "1.0"]).map(lambda v: _dumps({**doc, "schema": v}))
    cut = st.integers(0, max(len(original) - 1, 0)).map(lambda n: original[:n])
    return st.one_of(replaced, dropped, newer, cut, json_values.map(_dumps), st.binary(max_size=64),
                     st.sampled_from(SPECIAL_BYTES))  # fmt: skip


def _dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


def baseline_bytes(baseline: Path, name: str) -> bytes:
    return (baseline / name).read_bytes()


def results_of(root: Path) -> dict[int, TrialResult]:
    return read_study(open_store(str(root), create=False))[1].results


def assert_one_trial_at_most(baseline: Path, root: Path, victim: int) -> None:
    """Every trial but ``victim`` reads as before; ``victim`` answers its launch or failed with a reason."""
    before, after = results_of(baseline), results_of(root)
    assert {i: r for i, r in after.items() if i != victim} == {i: r for i, r in before.items() if i != victim}
    if victim in after:
        got = after[victim]
        assert (got.index == victim and got.params == before[victim].params) or got.failed
        if got.failed and got != before.get(victim):
            assert got.reason and len(got.reason) < 5000


def assert_commands_answer(root: Path, *, plots: bool = False) -> None:
    """status (both outputs), best and (``plots``: drawing them, about a second) report: a result,
    or one line and exit 1; never a traceback."""
    uri = str(root)
    commands = [["status", uri, "-o", "table"], ["status", uri, "-o", "json"], ["best", uri]]
    if plots:
        commands.append(["report", uri, "--output", str(root.parent / f"{root.name}.html")])
    for argv in commands:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(argv)
        assert code in (0, 1), (argv, code, err.getvalue())
        if code == 1:
            assert len(err.getvalue().strip().splitlines()) == 1, err.getvalue()
        else:
            assert "\x1b" not in out.getvalue() or argv[-1] == "json"


def read_views(root: Path) -> None:
    """What the views make of the records, drawn without plots (the resume test draws those)."""
    spec, history = read_study(open_store(str(root), create=False))
    results = history.ordered_results()
    report.report_html(spec, results, report.Figures(), history.lost, confirmation.review(spec, history))
    status.render(status.Snapshot(spec, history), "table")


TRIAL_RECORDS = {
    "result": result_object(VICTIM),
    "epoch of a finished trial": epoch_object(VICTIM, 1),
    "epoch of a running trial": epoch_object(RUNNING, 1),
    "attempt": attempt_object(VICTIM, 0),
    "stop request": stop_object(VICTIM),
    "admission": admission_object(RUNNING, 0),
}


@pytest.mark.parametrize("name", TRIAL_RECORDS.values(), ids=TRIAL_RECORDS.keys())
@given(data=st.data())
def test_a_trial_record_of_any_content_is_that_trials_problem_alone(
    baseline: Path, name: str, data: st.DataObject
) -> None:
    payload = data.draw(payloads(baseline_bytes(baseline, name)))
    victim = RUNNING if name.startswith(f"trials/{RUNNING:06d}") else VICTIM
    with copy_of(baseline, name, payload) as root:
        assert_one_trial_at_most(baseline, root, victim)
        read_views(root)
        assert_commands_answer(root)


@given(data=st.data())
def test_views_of_any_content_are_rewritten_never_read(baseline: Path, data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(["best.json", "history.csv", "report.html"]))
    payload = data.draw(st.binary(max_size=64) | json_values.map(_dumps))
    with copy_of(baseline, name, payload) as root:
        assert_one_trial_at_most(baseline, root, victim=-1)
        assert_commands_answer(root)


CONTROLLER_RECORDS = {"launch record": params_object(VICTIM), "spec snapshot": SPEC_OBJECT}


@pytest.mark.parametrize("name", CONTROLLER_RECORDS.values(), ids=CONTROLLER_RECORDS.keys())
@given(data=st.data())
def test_an_unreadable_record_of_the_controllers_stops_every_command_with_one_line(
    baseline: Path, name: str, data: st.DataObject
) -> None:
    original = baseline_bytes(baseline, name)
    payload = data.draw(st.binary(max_size=64) | st.sampled_from(SPECIAL_BYTES) if name == SPEC_OBJECT
                        else payloads(original))  # fmt: skip
    with copy_of(baseline, name, payload) as root:
        try:
            read_study(open_store(str(root), create=False))
        except KubetuneError as exc:
            assert name in str(exc) and "\n" not in str(exc)
        else:
            assert_one_trial_at_most(baseline, root, VICTIM)
        assert_commands_answer(root)


@settings(max_examples=4)  # each draws the report's plots: seconds
@given(data=st.data())
def test_a_study_resumes_past_any_result_record(baseline: Path, data: st.DataObject) -> None:
    name = result_object(VICTIM)
    payload = data.draw(payloads(baseline_bytes(baseline, name)))
    with copy_of(baseline, name, payload) as root:
        before = results_of(root)[VICTIM]
        store = open_store(str(root))
        outcome = Study(SPEC, store, InProcessLauncher(store), poll_s=0.0).run()
        after = results_of(root)
        assert outcome.completed and sorted(after) == list(range(SPEC.budget.max_trials))
        assert after[VICTIM] == before  # derived again identically: nothing was written for it


# Several objectives and a constraint on a measured metric: a result's metrics and wall time are
# what the study weighs, read from the trial's record like every other field.
MULTI = parse_spec(
    """
    name: fuzz-multi
    objectives: [{metric: val_accuracy}, {metric: param_count}]
    constraints: [{metric: gpu_seconds, max: 100}]
    optimizer: {n_initial_points: 3, random_state: 1}
    budget: {max_trials: 5, max_failed: 8}
    trial: {epochs: 2}
    """
)


@pytest.fixture(scope="module")
def multi_baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("multi")
    store = open_store(str(root))
    launcher = InProcessLauncher(store, epochs=2, wall_s=30.0,
                                 metrics=lambda p: {"param_count": float(p["num_dense_nodes"])})  # fmt: skip
    Study(MULTI, store, launcher, poll_s=0.0).run()
    return root


@given(data=st.data())
def test_a_multi_objective_result_of_any_content_is_that_trials_problem_alone(
    multi_baseline: Path, data: st.DataObject
) -> None:
    name = result_object(VICTIM)
    payload = data.draw(payloads(baseline_bytes(multi_baseline, name)))
    with copy_of(multi_baseline, name, payload) as root:
        assert_one_trial_at_most(multi_baseline, root, VICTIM)
        read_views(root)
        assert_commands_answer(root)


def test_a_folder_in_place_of_a_result_fails_that_trial(baseline: Path) -> None:
    with copy_of(baseline, "scratch", b"") as root:
        (root / result_object(VICTIM)).unlink()
        (root / result_object(VICTIM)).mkdir()
        store = open_store(str(root))
        outcome = Study(SPEC, store, InProcessLauncher(store), poll_s=0.0).run()
        assert outcome.completed
        # Not listed as an object, so its index looked unfinished: relaunched, and its rerun's
        # record could not be written either; the trial is failed with the reason.
        failed = read_study(store)[1].results[VICTIM]
        assert failed.failed and "result record unreadable" in (failed.reason or ""), failed.reason
        assert_commands_answer(root, plots=True)
