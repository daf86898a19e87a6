"""The Study object's status, written live by a study loop: at each trial's end, and at the end."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import Any

import yaml

from kubetune.controller.history import read_spec
from kubetune.controller.study import Study
from kubetune.kubernetes.status_writer import Status, StatusWriter
from kubetune.kubernetes.study_resource import StudyResource
from kubetune.spec import Spec, parse_spec
from kubetune.store import Store, open_store
from tests.synthetic import InProcessLauncher

SPEC = """
name: live
space:
  - {name: learning_rate, type: real, low: 1.0e-5, high: 1.0e-1, prior: log-uniform}
optimizer: {n_initial_points: 2, random_state: 3}
budget: {max_trials: 3, parallel: 1}
"""
PREVIOUS = {"type": "Complete", "status": "True", "reason": "MaxTrials", "message": "m",
            "lastTransitionTime": "2030-01-01T00:00:00Z", "observedGeneration": 4}  # fmt: skip


def test_each_trials_end_and_the_studys_are_written_and_the_rest_held(tmp_path: Path) -> None:
    sent: list[Status] = []
    store = open_store(str(tmp_path))
    clock = [0.0]  # frozen: nothing is due by the rate alone
    writer = StatusWriter(sent.append, lambda: clock[0], every_s=5.0)
    shown = {"metadata": {"generation": 4}, "spec": {}, "status": {"conditions": [PREVIOUS]}}
    resource = StudyResource(writer, store.uri, shown, lambda: shown, lambda: clock[0])
    study = Study(parse_spec(SPEC), store, InProcessLauncher(store), on_progress=resource, poll_s=0.0)
    study.run()
    resource.ended(study)

    assert [s["progress"] for s in sent][-1] == "3/3"
    assert sent[-1]["phase"] == "Completed" and sent[-1]["observedGeneration"] == 4
    assert sent[-1]["best"] is not None and sent[-1]["store"] == store.uri
    # One status for each trial that ended (the first write also comes at once); none repeated.
    assert {s["progress"] for s in sent} >= {"1/3", "2/3", "3/3"}
    assert all(a != b for a, b in pairwise(sent))
    # The Complete the object showed before is gone while the study runs, then set anew.
    shown_running = [[(c["type"], c["status"]) for c in s["conditions"]] for s in sent[:-1]]
    assert shown_running == [[("Running", "False")]] + [[("Running", "True")]] * (len(sent) - 2)
    running, complete = sent[-1]["conditions"]
    assert (running["type"], running["status"], running["reason"]) == ("Running", "False", "StudyCompleted")
    assert (complete["type"], complete["status"], complete["observedGeneration"]) == ("Complete", "True", 4)
    assert complete["lastTransitionTime"] != PREVIOUS["lastTransitionTime"]


class Object:
    """A Study object as the API holds it, made from ``spec``, and the clock its reader goes by."""

    def __init__(self, spec: Spec) -> None:
        self.now = 0.0
        self.shown: dict[str, Any] = {"metadata": {"generation": 1}, "spec": yaml.safe_load(spec.to_yaml())}
        self.shown["spec"].pop("name")

    def followed(self, store: Store) -> StudyResource:
        writer = StatusWriter(lambda status: None, lambda: self.now)
        return StudyResource(writer, store.uri, self.shown, lambda: self.shown, lambda: self.now)


def test_a_patched_budget_reaches_the_running_study_and_its_store(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    spec = parse_spec(SPEC)
    obj = Object(spec)
    shown, resource = obj.shown, obj.followed(store)

    def patch_after_the_first_trial(study: Study) -> None:
        if len(study.history.results) == 1 and shown["metadata"]["generation"] == 1:
            # kubectl patch study live --type merge -p '{"spec": {"budget": {"max_trials": 5}}}'
            shown["spec"]["budget"]["max_trials"] = 5
            shown["metadata"]["generation"] = 2
        obj.now += 10.0  # a turn of the loop, past the next read of the object
        resource(study)

    study = Study(spec, store, InProcessLauncher(store), on_progress=patch_after_the_first_trial, poll_s=0.0)
    outcome = study.run()
    assert outcome.summary.total == 5  # extended while it ran, no restart
    assert read_spec(store).budget.max_trials == 5  # a controller restarted now resumes the same study
    assert resource.amended(spec).budget.max_trials == 5  # and so does one started from the old ConfigMap


def test_only_budget_and_confirm_are_taken_and_a_spec_the_parser_refuses_is_not(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    spec = parse_spec(SPEC)
    obj = Object(spec)
    shown, resource = obj.shown, obj.followed(store)
    study = Study(spec, store, InProcessLauncher(store), poll_s=0.0)
    study.run()

    def patched(generation: int, budget: dict[str, Any]) -> None:
        shown["spec"]["budget"].update(budget)
        shown["spec"]["optimizer"]["random_state"] = 99  # the CRD refuses this: never taken here either
        shown["metadata"]["generation"] = generation
        obj.now += 10.0
        resource(study)

    patched(2, {"max_trials": 2, "parallel": 3})  # the parser refuses parallel above max_trials
    assert study.spec == spec and read_spec(store) == spec
    patched(3, {"max_trials": 4, "parallel": 1})
    assert study.spec.budget.max_trials == 4 and study.spec.optimizer == spec.optimizer
