"""`kubectl get studies`: the chart's Study object on the test cluster, its status written live.

Helm installs the chart's CRD (crds/) before the templates, so the chart makes
the Study and the controller, in its pod, writes its status from the store's
records. A user reads it with kubectl as below, and deletes the study's Jobs
with it. Without it, the chart makes none and the study runs as before.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from kubetune.store import open_store
from tests.cluster.fixtures import Kubectl
from tests.polling import wait_for
from tests.reliability import rig as cl
from tests.reliability.checks import KUBETUNE

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

    # The conditions and the study's Events, on the Study as on its controller Job.
    waited = kubectl(
        "wait", "--for=condition=Complete", f"study/{study}", "-n", rig.namespace, "--timeout=5s"
    )
    assert "condition met" in waited.stdout
    described = kubectl("describe", "study", study, "-n", rig.namespace).stdout
    assert "TrialSucceeded" in described and "StudyCompleted" in described, described
    # kubetune status from the cluster alone: the user's kubeconfig, no bucket.
    env = {"KUBECONFIG": str(kubectl.kubeconfig), "PATH": "/usr/bin:/bin"}
    shown = subprocess.run([KUBETUNE, "status", f"study/{study}", "-n", rig.namespace, "-o", "table"],
                           env=env, capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert f"{study} (Completed)" in shown.stdout and "5/5 finished: 5 succeeded" in shown.stdout

    # The Study owns the controller Job, which owns the trials': deleting it deletes them all.
    controller = cl.controller_job(rig.rest, rig.namespace)
    uid = kubectl("get", "study", study, "-n", rig.namespace, "-o", "jsonpath={.metadata.uid}").stdout
    assert [(r["kind"], r["uid"]) for r in controller["metadata"]["ownerReferences"]] == [("Study", uid)]
    kubectl("delete", "study", study, "-n", rig.namespace)
    jobs = f"/apis/batch/v1/namespaces/{rig.namespace}/jobs"
    wait_for("the Study's Jobs to be deleted", lambda: not cl.items(rig.rest, jobs), 60)
    # The store keeps every record.
    assert len(open_store(store).list("trials/")) >= 5 * 2 and open_store(store).get("best.json")


def test_without_the_study_resource_the_chart_makes_none_and_the_study_runs(
    rig: cl.Rig, kubectl: Kubectl, bucket: str
) -> None:
    study = "unwatched"
    store = f"gs://{bucket}/{study}"
    spec = {"name": study, "optimizer": {"n_initial_points": 2, "random_state": 2},
            "budget": {"max_trials": 2, "parallel": 1, "max_failed": 1}}  # fmt: skip
    rig.install(store, spec, {"default": {"sleep": 1}}, studyResource={"enabled": False})

    job = rig.wait_controller_finished(240)
    assert cl.finished(job) == "Complete"
    assert job["metadata"]["annotations"]["kubetune.dev/trials-succeeded"] == "2"
    assert not job["metadata"].get("ownerReferences")
    assert kubectl("get", "studies", "-n", rig.namespace, "-o", "name").stdout.strip() == ""
    role = kubectl("get", "role", "-n", rig.namespace, "-o", "json").stdout
    assert "studies" not in role
