"""`kubectl get studies`: the chart's Study object on the test cluster, its status written live.

Helm installs the chart's CRD (crds/) before the templates, so the chart makes
the Study and the controller, in its pod, writes its status from the store's
records. A user reads it with kubectl as below.
"""

from __future__ import annotations

import json

import pytest

from kubetune.store import open_store
from tests.cluster.fixtures import Kubectl
from tests.polling import wait_for
from tests.reliability import rig as cl

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def test_kubectl_get_studies_shows_a_study_extended_live_by_a_patch(
    rig: cl.Rig, kubectl: Kubectl, bucket: str
) -> None:
    study = "watched"
    store = f"gs://{bucket}/{study}"
    spec = {"name": study, "optimizer": {"n_initial_points": 2, "random_state": 2},
            "budget": {"max_trials": 3, "parallel": 1, "max_failed": 1}}  # fmt: skip
    rig.install(store, spec, {"default": {"sleep": 3}})
    seen: set[tuple[str, str]] = set()

    def row() -> list[str]:
        line = kubectl("get", "studies", "-n", rig.namespace, "--no-headers").stdout.split()
        if len(line) > 2:
            seen.add((line[1], line[2]))
        return line

    def phase_is(*phases: str) -> list[str] | None:
        line = row()
        return line if len(line) > 2 and line[1] in phases else None

    def one_done() -> bool:
        row()
        return ("Running", "1/3") in seen

    wait_for("the first trial's end, as kubectl shows it", one_done, 300)
    # The user extends the running study: only budget and confirm may change.
    kubectl("patch", "study", study, "-n", rig.namespace, "--type", "merge",
            "-p", '{"spec": {"budget": {"max_trials": 5}}}')  # fmt: skip
    final = wait_for("the study to end", lambda: phase_is("Completed", "Failed"), 300, interval_s=1)

    assert final[:4] == [study, "Completed", "5/5", "0"], final
    assert ("Running", "1/3") in seen and any(p == "Running" and t.endswith("/5") for p, t in seen), seen
    table = kubectl("get", "studies", "-n", rig.namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "PHASE", "TRIALS", "RUNNING", "BEST", "GPU-H", "AGE"]
    best = json.loads(open_store(store).get("best.json"))["best"]
    assert float(final[4]) == pytest.approx(best["value"], rel=1e-6)
    params = kubectl("get", "study", study, "-n", rig.namespace, "-o", "jsonpath={.status.best.params}")
    assert json.loads(params.stdout) == best["params"]
    # The apiserver refuses a change of anything else, naming the field.
    refused = kubectl("patch", "study", study, "-n", rig.namespace, "--type", "merge",
                      "-p", '{"spec": {"objective": {"metric": "loss"}}}', check=False)  # fmt: skip
    assert refused.returncode != 0 and "spec.objective is immutable" in refused.stderr, refused.stderr
