"""The record schema, versioned: older and newer records read with tolerance, a newer major refused.

Records here are written by hand, in the shapes other versions of kubetune
write, not by this version's to_json: what is tested is what a reader makes
of bytes it did not write.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from kubetune.contract import (
    MAX_RECORD_BYTES,
    REASON_MAX,
    SCHEMA_VERSION,
    AdmissionRecord,
    AttemptRecord,
    EpochRecord,
    LaunchRecord,
    NewerRecord,
    RecordError,
    StopRequest,
    TrialResult,
    cap_reason,
    params_object,
    result_object,
)
from kubetune.controller.history import read_history, read_study
from kubetune.controller.study import Study
from kubetune.errors import KubetuneError
from kubetune.spec import parse_spec
from kubetune.store import open_store
from tests.synthetic import InProcessLauncher

# What kubetune wrote before records were versioned by minor (schema: 1), byte for byte in shape.
RESULT_1_0 = {
    "index": 3, "status": "succeeded", "params": {"learning_rate": 0.01, "num_dense_layers": 2},
    "objective": "val_accuracy", "objective_value": 0.88, "reason": None,
    "metrics": {"val_accuracy": 0.88, "val_loss": 0.31}, "wall_time_s": 40.5, "epoch_times_s": [12.0, 11.0],
    "images_per_s": 5400.0, "param_count": 56590, "seed": 0, "versions": {"kubetune": "0.1.0"},
    "started_at": 1.0, "finished_at": 41.5, "last_epoch": 2, "schema": 1,
}  # fmt: skip
LAUNCH_1_0 = {"index": 3, "params": {"learning_rate": 0.01, "num_dense_layers": 2}, "launched_at": 1.0,
              "launcher": "kubernetes", "gpus": 1, "confirms": None, "seed": None, "schema": 1}  # fmt: skip


def raw(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode()


def test_a_record_from_before_minor_versions_reads_with_the_new_fields_defaulted() -> None:
    result = TrialResult.from_json(raw(RESULT_1_0))
    assert (result.schema, result.objective_value, result.last_epoch) == ("1.0", 0.88, 2)
    assert (result.attempt, result.epoch_metrics) == (None, [])  # fields of 1.1
    # 1.0 kept the CNN's throughput and size at the top level; they are its metrics now.
    assert (result.metrics["images_per_s"], result.metrics["param_count"]) == (5400.0, 56590.0)
    assert result.unknown == {}
    assert LaunchRecord.from_json(raw(LAUNCH_1_0)).params == LAUNCH_1_0["params"]


def test_a_newer_minor_record_reads_and_keeps_what_it_does_not_know_when_written_again() -> None:
    shared = {k: v for k, v in RESULT_1_0.items() if k not in ("images_per_s", "param_count")}
    newer = {**shared, "schema": "1.7", "energy_kwh": 0.42, "hardware": {"gpu": "H200"}}
    result = TrialResult.from_json(raw(newer))
    assert result.schema == "1.7" and result.unknown == {"energy_kwh": 0.42, "hardware": {"gpu": "H200"}}
    again = json.loads(result.to_json())
    assert again["energy_kwh"] == 0.42 and again["hardware"] == {"gpu": "H200"}
    assert again["schema"] == SCHEMA_VERSION  # written by this version, with what it knows


@pytest.mark.parametrize(
    "cls", [TrialResult, LaunchRecord, EpochRecord, AttemptRecord, StopRequest, AdmissionRecord]
)
def test_a_newer_major_record_is_refused_naming_both_versions(cls: type[TrialResult]) -> None:
    with pytest.raises(NewerRecord, match=rf"record schema 2\.0 is newer than this kubetune's {SCHEMA_VERSION}: "
                       "upgrade the controller"):  # fmt: skip
        cls.from_json(raw({**RESULT_1_0, "schema": "2.0"}))


def test_a_newer_major_result_is_its_trials_failure_and_an_upgrade_reads_it(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    spec = parse_spec("")
    store.create(params_object(3), raw(LAUNCH_1_0))
    store.create(result_object(3), raw({**RESULT_1_0, "schema": "2.3"}))
    [result] = read_history(store, spec).ordered_results()
    assert result.failed and result.reason == (
        f"malformed result record: record schema 2.3 is newer than this kubetune's {SCHEMA_VERSION}: "
        "upgrade the controller"
    )
    assert store.get(result_object(3)) == raw({**RESULT_1_0, "schema": "2.3"})  # derived, never written


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({**RESULT_1_0, "schema": "one"}, r'schema: must be "MAJOR\.MINOR", got \'one\''),
        ({**RESULT_1_0, "metrics": [1.0]}, r"metrics: must be an object, got a list"),
        ({**RESULT_1_0, "params": {}}, None),  # a valid record: its launch decides (test_history)
        ({**RESULT_1_0, "index": True}, r"index: must be an integer, got a boolean"),
        ({**RESULT_1_0, "index": 10**30}, r"index: must be within ±2\^53, got an integer of 31 digits"),
        ({**RESULT_1_0, "index": -1}, r"index: must be at least 0, got -1"),
        ({**RESULT_1_0, "status": "won"}, r"status: must be one of succeeded, failed, pruned, got 'won'"),
        ({**RESULT_1_0, "epoch_metrics": [{"val_accuracy": 2.0}]}, None),  # bounds are the kind's
        ({**RESULT_1_0, "epoch_metrics": [{"val_accuracy": "x"}]}, r"epoch_metrics\[0\]\.val_accuracy: must be a number"),
        ({**RESULT_1_0, "versions": {"x": 1}}, r"versions\.x: must be a string, got an integer"),
        ({k: v for k, v in RESULT_1_0.items() if k != "objective"}, r"objective: required"),
    ],
)  # fmt: skip
def test_every_field_is_checked_against_its_type(obj: dict[str, Any], message: str | None) -> None:
    if message is None:
        TrialResult.from_json(raw(obj))
        return
    with pytest.raises(RecordError, match=message):
        TrialResult.from_json(raw(obj))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", r"not valid JSON"),
        (b"\x80\x81 binary", r"not valid JSON: not UTF-8 text"),
        (b"[" * 100_000, r"not valid JSON: nested too deeply"),
        (b'{"index": ' + b"9" * 5000 + b"}", r"not valid JSON: Exceeds the limit \(4300 digits\)"),
        (b'{"index": 1, "x": NaN}', r"not valid JSON: NaN is not a number JSON allows"),
        (
            raw(RESULT_1_0).replace(b'"objective_value": 0.88', b'"objective_value": 1e999'),
            r"objective_value: must be a finite number, got inf",
        ),
        (b"[1]", r"must be a JSON object, got a list"),
        (b'{"a": "' + b"x" * MAX_RECORD_BYTES + b'"}', r"1\.0 MiB, over the 1\.0 MiB a record may hold"),
    ],
)
def test_bytes_that_are_no_record_are_refused_in_one_short_line(data: bytes, message: str) -> None:
    with pytest.raises(RecordError, match=message) as info:
        TrialResult.from_json(data)
    assert len(str(info.value)) < 200 and "\n" not in str(info.value)


def test_a_reason_is_capped_saying_how_much_was_cut() -> None:
    reason = "y" * 20_000_000
    capped = cap_reason(reason)
    assert len(capped) == REASON_MAX and capped.endswith(
        f"[... {20_000_000 - REASON_MAX + 40} characters cut]"
    )
    record = TrialResult(index=0, status="failed", params={}, objective="m", reason=reason)
    assert len(record.to_json()) < 2 * REASON_MAX  # a 20 MB stderr line makes a 5 KB record
    assert TrialResult.from_json(raw({**RESULT_1_0, "status": "failed", "reason": "z" * 50_000})).reason == (
        cap_reason("z" * 50_000)
    )


def test_an_unreadable_launch_record_stops_every_reader_in_one_line(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    store.create(params_object(3), b'{"index": 3, "params": [')
    with pytest.raises(
        KubetuneError, match=r"trials/000003/params\.json: unreadable launch record: not valid JSON"
    ):
        read_history(store, parse_spec(""))


BEFORE_KINDS = Path(__file__).parent / "data" / "store-before-kinds"


def test_a_store_written_before_kinds_owned_their_fields_reads_and_resumes(tmp_path: Path) -> None:
    """tests/data/store-before-kinds: a CNN study written by main before record schema 1.1 (trial 1
    lost an attempt, trial 2 failed, trials 5 and 6 confirm trial 3, whose record holds the CNN's
    images_per_s and param_count at the top level, as 1.0 records did)."""
    root = tmp_path / "store"
    shutil.copytree(BEFORE_KINDS, root)
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    spec, history = read_study(open_store(str(root)))
    assert [r.status for r in history.ordered_results()] == ["succeeded", "succeeded", "failed", "succeeded",
                                                             "succeeded"]  # fmt: skip
    third = history.results[3]
    assert (third.schema, third.metrics["images_per_s"], third.metrics["param_count"]) == (
        "1.0",
        5400.5,
        56590,
    )
    assert [a.cause for a in history.lost[1]] == ["evicted"] and sorted(history.confirmations()) == [5, 6]

    resumed = replace(spec, budget=replace(spec.budget, max_trials=7))
    outcome = Study(
        resumed, open_store(str(root)), InProcessLauncher(open_store(str(root))), poll_s=0.0
    ).run()
    assert outcome.completed
    _, after = read_study(open_store(str(root)))
    assert after.searched == 7 and after.results[3] == third
    assert all(root.joinpath(p).read_bytes() == data for p, data in before.items() if "trials/" in str(p))
    assert json.loads((root / "trials/000007/result.json").read_text())["schema"] == SCHEMA_VERSION
    history_csv = (root / "history.csv").read_text().splitlines()
    assert "metric.images_per_s" in history_csv[0] and "5400.5" in history_csv[4]


MULTI = parse_spec(
    "objectives: [{metric: val_accuracy}, {metric: param_count}]\n"
    "constraints: [{metric: gpu_seconds, max: 100}]"
)
LAUNCH_2_GPUS = {**LAUNCH_1_0, "gpus": 2, "schema": "1.2"}
RESULT_1_2 = {**{k: v for k, v in RESULT_1_0.items() if k not in ("images_per_s", "param_count")},
              "metrics": {"val_accuracy": 0.88, "val_loss": 0.31, "param_count": 56590.0}, "schema": "1.2"}  # fmt: skip


@pytest.mark.parametrize(
    ("result", "reason"),
    [
        (
            {**RESULT_1_2, "metrics": {"val_accuracy": 0.88}},
            "metrics.param_count: not reported, and the study weighs it",
        ),
        (
            {**RESULT_1_2, "wall_time_s": None},
            "wall_time_s: must be a finite number of seconds, at least 0, got None",
        ),
        (
            {**RESULT_1_2, "wall_time_s": -3.0},
            "wall_time_s: must be a finite number of seconds, at least 0, got -3.0",
        ),
        (
            {**RESULT_1_2, "wall_time_s": "40"},
            "malformed result record: wall_time_s: must be a number, got a string",
        ),
        (
            {**RESULT_1_2, "metrics": {"val_accuracy": 0.88, "param_count": 1e999}},
            None,
        ),  # inf: JSON dumps it as Infinity
    ],
)
def test_a_result_without_what_the_study_weighs_is_that_trials_failure(
    tmp_path: Path, result: dict[str, Any], reason: str | None
) -> None:
    store = open_store(str(tmp_path))
    store.create(params_object(3), raw(LAUNCH_2_GPUS))
    store.create(result_object(3), raw(result))
    [read] = read_history(store, MULTI).ordered_results()
    assert read.failed
    if reason is not None:
        assert read.reason == reason


def test_the_controller_measures_wall_time_and_gpu_seconds_where_the_study_names_them(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    store.create(params_object(3), raw(LAUNCH_2_GPUS))
    store.create(result_object(3), raw(RESULT_1_2))
    [read] = read_history(store, MULTI).ordered_results()
    assert read.succeeded and read.metrics["gpu_seconds"] == 81.0  # 40.5 s on 2 GPUs
    assert "wall_time_s" not in read.metrics  # named by no objective or constraint
    [plain] = read_history(store, parse_spec("")).ordered_results()
    assert "gpu_seconds" not in plain.metrics  # a study that names none reads its records as ever
