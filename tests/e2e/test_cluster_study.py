"""`helm install` a study into the real test control plane and watch it run.

Real parts throughout: kube-apiserver with RBAC and restricted Pod Security,
the real Job controller, scheduler and garbage collector, the chart rendered by
helm, a real node (kubelet, containerd, runc) advertising one GPU, the
controller and trial images built from the project's Dockerfiles (the trials
train the real CNN, on data pushed to the bucket), and fake-gcs-server as the
bucket.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import REPO
from tests.cluster.fixtures import Kubectl
from tests.cluster.images import ProjectImages
from tests.cluster.node import Node
from tests.gcs_emulator import FakeGCS
from tests.reliability.checks import assert_no_credentials

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
KUBETUNE = str(Path(sys.executable).parent / "kubetune")
STUDY = "e2e"
SELECTOR = f"kubetune.dev/study={STUDY}"
TRIAL = "app.kubernetes.io/component=trial"
CONTROLLER = "app.kubernetes.io/component=controller"


def image_values(image: str) -> dict[str, str]:
    repository, tag = image.rsplit(":", 1)
    # Pre-loaded into the node's containerd: never pulled.
    return {"repository": repository, "tag": tag, "pullPolicy": "IfNotPresent"}


def values(store: str, gcs: FakeGCS, images: ProjectImages) -> dict[str, Any]:
    gpu_toleration = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    return {
        "store": store,
        "image": image_values(images.controller),
        "trialImage": image_values(images.trial),
        # The test node has 2 CPUs: requests that fit the controller and a trial.
        "resources": {
            "controller": {"requests": {"cpu": "100m", "memory": "256Mi"}},
            "trial": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "3Gi"}},
        },
        "study": {
            "name": STUDY,
            "optimizer": {"n_initial_points": 2, "random_state": 0},
            "budget": {"max_trials": 4, "parallel": 2, "max_failed": 2},
            "trial": {"epochs": 1, "train_subset": 1024, "test_subset": 512, "batch_size": 256},
        },
        "gpu": {"count": 1},
        # The test cluster's only node is the GPU node: let the controller run there too.
        "controller": {"tolerations": gpu_toleration},
        "extraEnv": [{"name": "STORAGE_EMULATOR_HOST", "value": gcs.host}],
    }


def trial_pods(kubectl: Kubectl, namespace: str) -> list[dict[str, Any]]:
    out = kubectl(
        "get", "pods", "-n", namespace, "-l", f"{SELECTOR},app.kubernetes.io/component=trial", "-o", "json"
    )
    pods: list[dict[str, Any]] = json.loads(out.stdout)["items"]
    return pods


def job_condition(kubectl: Kubectl, namespace: str, name: str) -> str | None:
    job = json.loads(kubectl("get", "job", name, "-n", namespace, "-o", "json").stdout)
    for c in job.get("status", {}).get("conditions") or []:
        if c["type"] in ("Complete", "Failed") and c["status"] == "True":
            return str(c["type"])
    return None


def test_helm_install_runs_a_study_on_the_gpu_node(
    cluster_assets: Path,
    kubectl: Kubectl,
    node: Node,
    project_images: ProjectImages,
    namespace: str,
    gcs: FakeGCS,
    bucket: str,
    prepared_data_dir: Path,
    tmp_path: Path,
) -> None:
    store = f"gs://{bucket}/{STUDY}"
    env = {**os.environ, "STORAGE_EMULATOR_HOST": gcs.host, "KUBETUNE_DATA_DIR": str(prepared_data_dir)}
    push = subprocess.run([KUBETUNE, "dataset", "push", store], env=env, capture_output=True, text=True)
    assert push.returncode == 0, push.stderr

    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values(store, gcs, project_images)))
    helm = str(cluster_assets / "helm")
    install = subprocess.run(
        [helm, "install", "tune", str(REPO / "charts" / "kubetune"), "-n", namespace, "-f", str(values_file),
         "--kubeconfig", str(kubectl.kubeconfig)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr
    assert f"kubectl get jobs,pods -n {namespace} -l {SELECTOR} -w" in install.stdout  # NOTES: how to watch

    [controller] = json.loads(
        kubectl(
            "get", "jobs", "-n", namespace, "-l", "app.kubernetes.io/component=controller", "-o", "json"
        ).stdout
    )["items"]
    controller_name = controller["metadata"]["name"]

    # Watch as a user would: with one GPU and parallel 2, one trial runs, one waits.
    most_running, saw_pending_beside_running, seen = 0, False, set[str]()
    tokens = set[str]()  # the controller's API token, looked for in every log at the end
    deadline = time.monotonic() + 900
    while job_condition(kubectl, namespace, controller_name) is None:
        assert time.monotonic() < deadline, controller_log(kubectl, namespace)
        tokens = tokens or controller_tokens(kubectl, node, namespace)
        phases = [p["status"].get("phase") for p in trial_pods(kubectl, namespace)]
        seen.update(p["metadata"]["name"] for p in trial_pods(kubectl, namespace))
        running = phases.count("Running")
        most_running = max(most_running, running)
        saw_pending_beside_running |= running == 1 and "Pending" in phases
        time.sleep(0.5)
    outcome = job_condition(kubectl, namespace, controller_name)
    assert outcome == "Complete", controller_log(kubectl, namespace)
    assert most_running == 1
    assert saw_pending_beside_running
    assert len(seen) >= 4

    # The answer, from the bucket alone.
    best = subprocess.run([KUBETUNE, "best", store], env=env, capture_output=True, text=True)
    assert best.returncode == 0, best.stderr
    status = json.loads(
        subprocess.run([KUBETUNE, "status", store], env=env, capture_output=True, text=True).stdout
    )
    assert status["trials"]["succeeded"] == 4
    assert json.loads(best.stdout)["index"] == status["best"]["index"]

    # A live leaderboard: every trial Job carries its metric and parameters as labels.
    board = kubectl(
        "get", "jobs", "-n", namespace, "-l", f"{SELECTOR},{TRIAL}",
        "-L", "kubetune.dev/val_accuracy,kubetune.dev/learning_rate", "--no-headers",
    ).stdout.splitlines()  # fmt: skip
    assert len(board) == 4 and all(len(row.split()) >= 6 for row in board), board

    # The controller Job tells the story: progress annotations and Events.
    annotations = json.loads(kubectl("get", "job", controller_name, "-n", namespace, "-o", "json").stdout)[
        "metadata"
    ]["annotations"]
    assert annotations["kubetune.dev/trials-succeeded"] == "4"
    assert annotations["kubetune.dev/best-trial"] == str(status["best"]["index"])
    events = kubectl(
        "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={controller_name}",
        "-o", "jsonpath={.items[*].reason}",
    ).stdout.split()  # fmt: skip
    assert events.count("TrialStarted") == 4 and events.count("TrialSucceeded") == 4

    # No credential in any log line, the controller's or the (real) trials'.
    assert_no_credentials(node.namespace_logs(namespace), tokens)

    # Uninstall: the trial Jobs go with the controller Job (ownerReferences + GC).
    uninstall = subprocess.run(
        [helm, "uninstall", "tune", "-n", namespace, "--kubeconfig", str(kubectl.kubeconfig)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert uninstall.returncode == 0, uninstall.stderr
    deadline = time.monotonic() + 120
    while kubectl("get", "jobs", "-n", namespace, "-l", SELECTOR, "-o", "name").stdout.strip():
        assert time.monotonic() < deadline, "trial Jobs survived helm uninstall"
        time.sleep(1)


def controller_log(kubectl: Kubectl, namespace: str) -> str:
    """The controller's log tail, for a failure message."""
    pods = kubectl("get", "pods", "-n", namespace, "-l", CONTROLLER, "-o", "name").stdout.split()
    if not pods:
        return "no controller pod"
    return kubectl("logs", "-n", namespace, pods[-1], "--tail=60", check=False).stdout


def controller_tokens(kubectl: Kubectl, node: Node, namespace: str) -> set[str]:
    """The API token mounted into the running controller pod (none before it runs)."""
    pods = json.loads(kubectl("get", "pods", "-n", namespace, "-l", CONTROLLER, "-o", "json").stdout)["items"]
    running = [p for p in pods if p["status"].get("phase") == "Running"]
    return node.pod_tokens(running[0]["metadata"]["uid"]) if running else set()
