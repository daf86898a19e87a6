"""`helm install` a study into the real test control plane and watch it run.

Real parts throughout: kube-apiserver with RBAC and restricted Pod Security,
the real Job controller, scheduler and garbage collector, the chart rendered by
helm, the controller and trials running the project's code (as local processes,
by the test kubelet of a fake GPU node), and fake-gcs-server as the bucket.
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
from tests.cluster.kubelet import LocalKubelet
from tests.gcs_emulator import FakeGCS
from tests.reliability._checks import assert_no_credentials
from tests.reliability._cluster import namespace_logs, pod_tokens

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
KUBETUNE = str(Path(sys.executable).parent / "kubetune")
STUDY = "e2e"
SELECTOR = f"kubetune.dev/study={STUDY}"
TRIAL = "app.kubernetes.io/component=trial"
CONTROLLER = "app.kubernetes.io/component=controller"


def values(store: str, gcs: FakeGCS) -> dict[str, Any]:
    gpu_toleration = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    return {
        "store": store,
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
    kubelet: LocalKubelet,
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
    values_file.write_text(yaml.safe_dump(values(store, gcs)))
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
    deadline = time.monotonic() + 600
    while job_condition(kubectl, namespace, controller_name) is None:
        assert time.monotonic() < deadline, controller_log(kubectl, kubelet, namespace)
        tokens = tokens or controller_tokens(kubectl, kubelet, namespace)
        phases = [p["status"].get("phase") for p in trial_pods(kubectl, namespace)]
        seen.update(p["metadata"]["name"] for p in trial_pods(kubectl, namespace))
        running = phases.count("Running")
        most_running = max(most_running, running)
        saw_pending_beside_running |= running == 1 and "Pending" in phases
        time.sleep(0.5)
    assert job_condition(kubectl, namespace, controller_name) == "Complete", controller_log(
        kubectl, kubelet, namespace
    )
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
    assert_no_credentials(namespace_logs(kubelet, namespace), tokens)

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


def controller_log(kubectl: Kubectl, kubelet: LocalKubelet, namespace: str) -> str:
    """The controller's log tail, for a failure message (no `kubectl logs` without a real kubelet)."""
    pods = kubectl("get", "pods", "-n", namespace, "-l", CONTROLLER, "-o", "name").stdout.split()
    return kubelet.logs(namespace, pods[-1].removeprefix("pod/"))[-3000:] if pods else "no controller pod"


def controller_tokens(kubectl: Kubectl, kubelet: LocalKubelet, namespace: str) -> set[str]:
    """The API token mounted into the running controller pod (none before it runs)."""
    pods = json.loads(kubectl("get", "pods", "-n", namespace, "-l", CONTROLLER, "-o", "json").stdout)["items"]
    running = [p for p in pods if p["status"].get("phase") == "Running"]
    return pod_tokens(kubelet, running[0]) if running else set()
