"""The example program study (examples/program): a plain Python function with a known optimum.

Run as a user would, locally through the CLI, and on the test cluster as one
Job per trial. Real parts: the GP loop, the wrapper, the program, the store.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from kubetune.contract import TrialResult, result_object
from kubetune.controller.study import Study
from kubetune.kinds import ProgramSettings
from kubetune.kubernetes import JobObserver, JobSettings, KubernetesLauncher
from kubetune.spec import Budget, load_spec, parse_spec
from kubetune.store import open_store
from tests import REPO
from tests.cluster.controlplane import ControlPlane
from tests.cluster.fixtures import Kubectl
from tests.cluster.images import ProjectImages, program_image
from tests.cluster.node import Node
from tests.gcs_emulator import FakeGCS
from tests.reliability.rig import GPU_TOLERATION

pytestmark = pytest.mark.slow
KUBETUNE = str(Path(sys.executable).parent / "kubetune")
EXAMPLE = REPO / "examples" / "program" / "study.yaml"
# The function's minimum: loss 0 at x=0.3, y=-0.5, variant=b (examples/program/train.py).
OPTIMUM = {"x": 0.3, "y": -0.5, "variant": "b"}


def test_the_example_study_finds_the_known_optimum(tmp_path: Path) -> None:
    store = tmp_path / "store"
    # From the repository root, as the example's comment says: its command names the script from there.
    run = subprocess.run(
        [KUBETUNE, "run", str(EXAMPLE), "--store", str(store)],
        cwd=REPO, capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    best = json.loads(run.stdout.splitlines()[-1])
    assert best["loss"] < 0.01
    assert best["params"]["variant"] == "b"  # a categorical of strings, searched as one
    assert best["params"]["x"] == pytest.approx(OPTIMUM["x"], abs=0.1)
    assert best["params"]["y"] == pytest.approx(OPTIMUM["y"], abs=0.1)

    rows = list(csv.DictReader(io.StringIO((store / "history.csv").read_text())))
    assert len(rows) == 20 and {r["status"] for r in rows} == {"succeeded"}
    # Every trial reported its three epochs, the last one equal to its final loss.
    for index in range(20):
        epochs = sorted((store / "trials" / f"{index:06d}" / "epochs").glob("*.json"))
        last = json.loads(epochs[-1].read_text())
        assert len(epochs) == 3
        assert last["metrics"]["loss"] == pytest.approx(float(rows[index]["objective"]), rel=1e-5)


@pytest.mark.cluster
def test_the_example_study_runs_as_jobs_on_the_test_cluster(
    control_plane: ControlPlane, node: Node, project_images: ProjectImages, kubectl: Kubectl, namespace: str,
    gcs: FakeGCS, bucket: str,
) -> None:  # fmt: skip
    image = program_image(project_images.controller)  # examples/program/Dockerfile's layout
    node.load_images([image])
    spec = load_spec(EXAMPLE)
    assert isinstance(spec.trial, ProgramSettings)
    trial = replace(spec.trial, image=image)
    spec = replace(spec, trial=trial, budget=Budget(max_trials=4, parallel=2))
    env = [{"name": "STORAGE_EMULATOR_HOST", "value": gcs.host}]
    settings = JobSettings(image="kubetune-trial:unused", gpus=0, tolerations=[GPU_TOLERATION], env=env,
                           pendingTimeoutSeconds=120)  # fmt: skip
    store = open_store(f"gs://{bucket}/bowl")
    launcher = KubernetesLauncher(control_plane.api_client, namespace, settings)
    try:
        outcome = Study(spec, store, launcher, poll_s=0.2).run()
    finally:
        launcher.close()
    assert outcome.completed
    results = [TrialResult.from_json(store.get(result_object(i))) for i in range(4)]
    assert [r.status for r in results] == ["succeeded"] * 4, [r.reason for r in results]
    assert all(r.last_epoch == 3 for r in results)

    jobs = json.loads(kubectl("get", "jobs", "-n", namespace, "-o", "json").stdout)["items"]
    assert len(jobs) == 4
    for job in jobs:
        [container] = job["spec"]["template"]["spec"]["containers"]
        assert container["image"] == image  # the study's own image, not the JobSettings' one
        assert container["command"][:3] == ["kubetune", "trial", "exec"]
        assert job["status"].get("succeeded") == 1


@pytest.mark.cluster
def test_a_two_objective_study_runs_as_jobs_labelled_with_what_it_weighs(
    control_plane: ControlPlane, node: Node, project_images: ProjectImages, kubectl: Kubectl, namespace: str,
    gcs: FakeGCS, bucket: str,
) -> None:  # fmt: skip
    """Issue 25 as Jobs: the loss and the wall time kubetune measures, under a GPU-seconds cap; each
    finished Job carries both objectives and the constrained metric as labels."""
    image = program_image(project_images.controller)
    node.load_images([image])
    example = load_spec(EXAMPLE)
    assert isinstance(example.trial, ProgramSettings)
    spec = parse_spec(
        "objectives: [{metric: loss, goal: minimize}, {metric: wall_time_s}]\n"
        "constraints: [{metric: gpu_seconds, max: 3600}]\n"
        "trial: {kind: program, command: x}\nspace: [{name: x, type: real, low: 0, high: 1}]"
    )
    trial, budget = replace(example.trial, image=image), Budget(max_trials=4, parallel=2)
    spec = replace(
        example, objectives=spec.objectives, constraints=spec.constraints, trial=trial, budget=budget
    )
    env = [{"name": "STORAGE_EMULATOR_HOST", "value": gcs.host}]
    settings = JobSettings(image="kubetune-trial:unused", gpus=0, tolerations=[GPU_TOLERATION], env=env,
                           pendingTimeoutSeconds=120)  # fmt: skip
    store = open_store(f"gs://{bucket}/two")
    launcher = KubernetesLauncher(control_plane.api_client, namespace, settings)
    params = [d.name for d in spec.space]
    observer = JobObserver(
        control_plane.api_client, namespace, spec.name, None, params, ["wall_time_s", "gpu_seconds"]
    )
    try:
        outcome = Study(spec, store, launcher, observer=observer, poll_s=0.2).run()
    finally:
        launcher.close()
    assert outcome.completed
    best = json.loads(store.get("best.json"))
    assert best["front"] and {m["index"] for m in best["front"]} <= set(range(4))
    jobs = json.loads(kubectl("get", "jobs", "-n", namespace, "-o", "json").stdout)["items"]
    for job in jobs:
        labels = job["metadata"]["labels"]
        assert {"kubetune.dev/loss", "kubetune.dev/wall_time_s", "kubetune.dev/gpu_seconds"} <= set(labels)
        assert labels["kubetune.dev/gpu_seconds"] == "0"  # no GPU asked for (gpus: 0)


TWO_METRICS = """
name: tradeoff
objectives: [{metric: loss, goal: minimize}, {metric: cost, goal: minimize}]
constraints: [{metric: gpu_seconds, max: 3600}]
space: [{name: x, type: real, low: -1, high: 1}]
optimizer: {n_initial_points: 3, random_state: 0}
budget: {max_trials: 8, parallel: 2}
trial: {kind: program, command: "python3 %(script)s --x {x}"}
"""
# Two metrics that pull apart: loss is least at x=0.3, cost at x=0; between them, the front.
PROGRAM = """
import sys
value = float(sys.argv[2])
print(f"kubetune: loss={(value - 0.3) ** 2} cost={abs(value)}", flush=True)
"""


def test_a_program_reporting_two_metrics_is_searched_for_their_front(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(PROGRAM)
    spec = tmp_path / "study.yaml"
    spec.write_text(TWO_METRICS % {"script": script})
    store = tmp_path / "store"
    run = subprocess.run([KUBETUNE, "run", str(spec), "--store", str(store)],
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    rows = list(csv.DictReader(io.StringIO((store / "history.csv").read_text())))
    assert len(rows) == 8 and {r["status"] for r in rows} == {"succeeded"}
    assert {r["feasible"] for r in rows} == {"true"}
    front = json.loads((store / "best.json").read_text())["front"]
    assert {m["index"] for m in front} == {int(r["index"]) for r in rows if r["pareto"] == "true"}
    # A trade-off, best loss first: along the front the loss rises as the cost falls.
    losses, costs = [m["values"]["loss"] for m in front], [m["values"]["cost"] for m in front]
    assert len(front) >= 2 and losses == sorted(losses) and costs == sorted(costs, reverse=True)
    picked = subprocess.run([KUBETUNE, "best", str(store), "--pick", "cost"], capture_output=True, text=True)
    assert json.loads(picked.stdout)["index"] == min(front, key=lambda m: m["values"]["cost"])["index"]
