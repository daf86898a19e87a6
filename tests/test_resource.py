"""The Study resource's status, from hand-made histories: what a restarted controller derives again."""

from __future__ import annotations

from dataclasses import replace

import pytest

from kubetune import crd
from kubetune.contract import AdmissionRecord, AttemptRecord, LaunchRecord, Params, failed_result
from kubetune.controller.history import History
from kubetune.controller.resource import study_status
from kubetune.spec import Spec, parse_spec
from tests.fake_trial import succeeded

T0 = 1_800_000_000.0  # launched at; 2027-01-15T08:00:00Z
HOUR = 3600.0
STORE = "gs://bucket/studies/s"

SPEC = """
name: s
space:
  - {name: learning_rate, type: real, low: 1.0e-5, high: 1.0e-1, prior: log-uniform}
budget: {max_trials: 4, parallel: 2, max_failed: 2, %(budget)s}
confirm: {top_k: %(top_k)d, seeds: 2}
"""


def spec(budget: str = "", top_k: int = 0) -> Spec:
    return parse_spec(SPEC % {"budget": budget, "top_k": top_k})


def params(i: int) -> Params:
    return {"learning_rate": 0.001 * (i + 1)}


def launch(h: History, i: int, *, at: float = T0, queue: str | None = None, **confirming: int) -> None:
    p = params(confirming["confirms"]) if "confirms" in confirming else params(i)
    h.launched[i] = LaunchRecord(i, p, at, "synthetic", queue=queue, **confirming)  # type: ignore[arg-type]


def done(h: History, i: int, value: float, wall_s: float = HOUR) -> None:
    h.add_result(succeeded(i, h.launched[i].params, "val_accuracy", value, wall_time_s=wall_s))


def fail(h: History, i: int) -> None:
    h.add_result(failed_result(i, h.launched[i].params, "val_accuracy", "exit 1"))


def status(s: Spec, h: History, now: float = T0 + HOUR, **kw: object) -> dict[str, object]:
    return study_status(s, h, now=now, store=STORE, generation=3, **kw)  # type: ignore[arg-type]


def test_a_new_study_is_pending_with_every_field_present() -> None:
    got = status(spec(), History())
    assert got == {
        "phase": "Pending", "observedGeneration": 3, "progress": "0/4",
        "conditions": [{"type": "Running", "status": "False", "reason": "NoTrialLaunched",
                        "message": "0 search trials finished", "observedGeneration": 3,
                        "lastTransitionTime": "2027-01-15T09:00:00Z"}],
        "trials": {"total": 4, "finished": 0, "succeeded": 0, "failed": 0, "pruned": 0, "running": 0,
                   "queued": 0, "lostAttempts": 0},
        "confirmation": None, "best": None, "winner": None, "gpuHours": 0.0, "maxGpuHours": None,
        "endedBy": None, "store": STORE, "report": f"{STORE}/report.html", "paretoFront": None,
    }  # fmt: skip
    assert set(got) == set(crd.status_schema()["properties"])


def test_a_running_study_counts_running_queued_and_lost_and_its_gpu_hours_so_far() -> None:
    h = History()
    launch(h, 0)
    done(h, 0, 0.8)
    launch(h, 1, at=T0 + HOUR)
    h.lost[1] = [AttemptRecord(1, 0, "preempted", "spot", T0 + HOUR, T0 + 1.5 * HOUR)]
    launch(h, 2, at=T0 + HOUR, queue="q")
    got = status(spec(), h, now=T0 + 2 * HOUR)
    assert got["phase"] == "Running" and got["progress"] == "1/4"
    assert got["trials"] == {"total": 4, "finished": 1, "succeeded": 1, "failed": 0, "pruned": 0,
                             "running": 1, "queued": 1, "lostAttempts": 1}  # fmt: skip
    # Trial 0's hour, trial 1's lost half hour and its half hour since: the queued one holds none.
    assert got["gpuHours"] == 2.0
    assert got["best"] == {"index": 0, "value": 0.8, "params": spec().full_params(params(0))}
    h.admissions[2] = {0: AdmissionRecord(2, 0, T0 + HOUR, T0 + 1.5 * HOUR)}
    assert status(spec(), h, now=T0 + 2 * HOUR)["gpuHours"] == 2.5


def test_the_best_is_by_the_goal_and_ties_go_to_the_earliest() -> None:
    h = History()
    for i, value in enumerate([0.7, 0.9, 0.9]):
        launch(h, i)
        done(h, i, value)
    assert status(spec(), h)["best"]["index"] == 1  # type: ignore[index]


def test_a_study_completes_when_every_trial_of_the_budget_finished() -> None:
    h = History()
    for i in range(4):
        launch(h, i)
        done(h, i, 0.5 + i / 10)
    first = status(spec(), h, now=T0 + 5 * HOUR)
    assert (first["phase"], first["endedBy"]) == ("Completed", "budget.max_trials")
    shared = {"message": "4 search trials finished", "observedGeneration": 3,
              "lastTransitionTime": "2027-01-15T13:00:00Z"}  # fmt: skip
    assert first["conditions"] == [
        {"type": "Running", "status": "False", "reason": "StudyCompleted", **shared},
        {"type": "Complete", "status": "True", "reason": "MaxTrials", **shared},
    ]
    # Later, from the conditions it showed: the transition time stays.
    again = status(spec(), h, now=T0 + 9 * HOUR, previous=first["conditions"])
    assert again["conditions"] == first["conditions"]


def test_the_last_search_trials_running_keep_the_study_running() -> None:
    h = History()
    for i in range(4):
        launch(h, i)
    done(h, 0, 0.8)
    got = status(spec(), h)
    assert (got["phase"], got["endedBy"]) == ("Running", "budget.max_trials")


def test_too_many_failures_fail_the_study() -> None:
    h = History()
    for i in range(3):
        launch(h, i)
    fail(h, 0)
    fail(h, 1)
    got = status(spec(), h)
    assert (got["phase"], got["endedBy"]) == ("Failed", "budget.max_failed")
    assert [(c["type"], c["status"], c["reason"]) for c in got["conditions"]] == [  # type: ignore[attr-defined]
        ("Running", "False", "StudyFailed"),
        ("Failed", "True", "MaxFailed"),
    ]


def test_a_spent_gpu_budget_ends_the_search_and_says_which_budget_without_the_clocks_numbers() -> None:
    s = spec("max_gpu_hours: 1.5")
    h = History()
    for i in range(2):
        launch(h, i)
        done(h, i, 0.8)
    got = status(s, h, now=T0 + 3 * HOUR)
    assert (got["phase"], got["endedBy"], got["maxGpuHours"]) == ("Completed", "budget.max_gpu_hours", 1.5)
    assert got["conditions"][1]["reason"] == "MaxGpuHours"  # type: ignore[index]
    # Raised on resume: the study runs again, and the merge patch's nulls clear what it said.
    assert status(spec("max_gpu_hours: 9"), h)["endedBy"] is None


def test_the_deadline_ends_the_search_by_the_clock() -> None:
    h = History()
    launch(h, 0)
    done(h, 0, 0.8)
    assert status(spec("max_hours: 2"), h, now=T0 + HOUR)["phase"] == "Running"
    late = status(spec("max_hours: 2"), h, now=T0 + 2 * HOUR)
    assert (late["phase"], late["endedBy"]) == ("Completed", "budget.max_hours")


def test_the_confirmation_phase_then_its_winner() -> None:
    s = spec(top_k=2)
    h = History()
    for i, value in enumerate([0.7, 0.9, 0.8, 0.6]):
        launch(h, i)
        done(h, i, value)
    got = status(s, h)
    assert (got["phase"], got["confirmation"], got["winner"]) == (
        "Confirming",
        {"finished": 0, "total": 4},
        None,
    )
    runs = {4: (1, 0.85), 5: (1, 0.87), 6: (2, 0.9), 7: (2, 0.92)}  # index: (confirms, value)
    for i, (confirms, _) in runs.items():
        launch(h, i, confirms=confirms, seed=i)
    assert status(s, h)["phase"] == "Confirming"
    for i, (_, value) in runs.items():
        done(h, i, value)
    got = status(s, h)
    assert got["phase"] == "Completed" and got["confirmation"] == {"finished": 4, "total": 4}
    winner = got["winner"]
    assert isinstance(winner, dict) and (winner["index"], winner["n"]) == (2, 2)
    assert winner["mean"] == pytest.approx(0.91) and winner["min"] == 0.9 and winner["max"] == 0.92
    assert got["best"]["index"] == 1  # type: ignore[index]  # the search's best stays the search's
    assert got["progress"] == "4/4" and got["trials"]["finished"] == 4  # type: ignore[index]


def test_a_multi_objective_study_names_its_pareto_front() -> None:
    s = parse_spec(
        (SPEC % {"budget": "", "top_k": 0}) + "objectives: [{metric: val_accuracy}, {metric: param_count}]"
    )
    h = History()
    for i, (accuracy, size) in enumerate([(0.9, 500.0), (0.8, 100.0), (0.7, 300.0)]):
        launch(h, i)
        h.add_result(replace(succeeded(i, params(i), "val_accuracy", accuracy),
                             metrics={"val_accuracy": accuracy, "param_count": size}))  # fmt: skip
    assert status(s, h)["paretoFront"] == [0, 1]  # trial 2 is worse than 1 on both
    assert status(spec(), History())["paretoFront"] is None
