"""The Study object's status, written live by a study loop: at each trial's end, and at the end."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

from kubetune.controller.study import Study
from kubetune.kubernetes.status_writer import Status, StatusWriter
from kubetune.kubernetes.study_resource import StudyResource
from kubetune.spec import parse_spec
from kubetune.store import open_store
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
    resource = StudyResource(writer, store.uri, shown)
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
    assert all(s["conditions"] == [] for s in sent[:-1])
    [complete] = sent[-1]["conditions"]
    assert (complete["type"], complete["status"], complete["observedGeneration"]) == ("Complete", "True", 4)
    assert complete["lastTransitionTime"] != PREVIOUS["lastTransitionTime"]
