"""The controller killed at random points of one study, again and again, and restarted.

Locally the runner is SIGKILLed six times; in the cluster the controller pod is
deleted five times (the kubelet SIGTERMs it, or with --grace-period=0
SIGKILLs it at once) and the controller Job makes a new pod each time. Every
time the study completes with each trial index recorded exactly once, no trial
Job created twice for one index, and best.json equal to the best record.
"""

from __future__ import annotations

import contextlib
import json
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kubetune.cli import EXIT_TERMINATED
from kubetune.contract import LaunchRecord, Params
from kubetune.store import Store, open_store
from tests import REPO
from tests.cluster.fixtures import Kubectl
from tests.cluster.node import Node
from tests.cluster.rest import Rest
from tests.polling import wait_for
from tests.reliability import rig as cl
from tests.reliability.checks import (
    KUBETUNE,
    PYTHON,
    assert_consistent,
    assert_no_credentials,
    fake_cli,
    fake_cli_env,
    named,
    run,
)

SPEC = """
name: %(name)s
optimizer: {n_initial_points: 3, random_state: 0}
budget: {max_trials: %(trials)d, parallel: 2, max_failed: 2}
trial: {epochs: 1}
"""


def sleeps(trials: int, seed: int) -> dict[str, Any]:
    """Fake trials of 1.5-3 s, different per index, the same on every run of the test."""
    rng = random.Random(seed)
    return {str(i): {"sleep": round(rng.uniform(1.5, 3.0), 2)} for i in range(trials)}


def launched_params(store: Store) -> dict[int, Params]:
    names = [n for n in store.list("trials/") if n.endswith("params.json")]
    return {(r := LaunchRecord.from_json(store.get(n))).index: r.params for n in names}


# --- on one machine --------------------------------------------------------------------------


def test_a_local_study_sigkilled_six_times_completes_each_trial_once(tmp_path: Path, shim: Path) -> None:
    # Long enough that six short lives (at most ~2 trials each) cannot finish it.
    trials, rng = 12, random.Random(1)
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC % {"name": "local-kills", "trials": trials})
    store_path = tmp_path / "store"
    env = fake_cli_env(shim, sleeps(trials, seed=1))
    first_params: dict[int, Params] = {}
    for kill in range(6):
        log = tmp_path / f"run-{kill}.log"
        with log.open("w") as out:
            runner = subprocess.Popen(
                fake_cli("run", str(spec), "--store", str(store_path)), env=env, cwd=REPO, stderr=out
            )
        # A random point inside the loop: after it replayed the store, before it ends.
        wait_for("the runner to start its loop", lambda: "study_" in log.read_text(), 60)  # noqa: B023
        time.sleep(rng.uniform(0.0, 2.0))
        assert runner.poll() is None, f"the study ended before kill {kill}: make it longer"
        runner.send_signal(signal.SIGKILL)
        runner.wait(timeout=30)
        for index, params in launched_params(open_store(str(store_path))).items():
            first_params.setdefault(index, params)
    store = open_store(str(store_path))
    assert len([n for n in store.list("trials/") if n.endswith("result.json")]) < trials

    final = run(fake_cli("run", str(spec), "--store", str(store_path)), env)
    assert final.returncode == 0, final.stderr[-3000:]
    _, history = assert_consistent(store, trials)
    for index, params in first_params.items():  # relaunched under its index with its parameters
        assert history.launched[index].params == params


def test_sigterm_stops_a_local_study_at_once_and_it_resumes(tmp_path: Path, shim: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC % {"name": "local-sigterm", "trials": 4})
    store_path = tmp_path / "store"
    log = tmp_path / "run.log"
    env = fake_cli_env(shim, {"default": {"sleep": 0.2}, "0": {"sleep": 600}})
    with started(fake_cli("run", str(spec), "--store", str(store_path)), env, log) as runner:
        began = wait_for("trial 0 to start", lambda: named(log.read_text(), "trial_started"), 60)
        trial_pid = int(began[0]["pid"])

        sent = time.monotonic()
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(timeout=10) == EXIT_TERMINATED
        assert time.monotonic() - sent < 5
    assert log.read_text().splitlines()[-1] == "kubetune: stopped by SIGTERM"
    assert not Path(f"/proc/{trial_pid}").exists()  # its trial stopped with it

    again = run(fake_cli("run", str(spec), "--store", str(store_path)), fake_cli_env(shim, {}))
    assert again.returncode == 0, again.stderr[-3000:]
    assert_consistent(open_store(str(store_path)), 4)


# The runner, with one change: at its loop's third turn a finalizer takes a SIGTERM and, as
# Python does with any exception raised in __del__, prints it and goes on.
SWALLOWS_SIGTERM = """
import os, signal, sys, time
from kubetune.controller.progress import Progress
from tests.reliability import fake_cli

class Finalized:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)

turns = [0]
def turn(self, study, _turn=Progress.__call__):
    turns[0] += 1
    if turns[0] == 3:
        Finalized()
    _turn(self, study)

Progress.__call__ = turn
sys.exit(fake_cli.main(sys.argv[1:]))
"""


def test_a_sigterm_swallowed_where_it_landed_still_stops_the_study(tmp_path: Path, shim: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC % {"name": "local-swallowed", "trials": 4})
    log = tmp_path / "run.log"
    env = fake_cli_env(shim, {"default": {"sleep": 0.2}, "0": {"sleep": 600}})
    argv = [PYTHON, "-c", SWALLOWS_SIGTERM, "run", str(spec), "--store", str(tmp_path / "store")]
    with started(argv, env, log) as runner:
        assert runner.wait(timeout=60) == EXIT_TERMINATED
    lines = log.read_text().splitlines()
    assert any(line.startswith("Exception ignored in") for line in lines), lines[-20:]  # it was lost there
    assert lines[-1] == "kubetune: stopped by SIGTERM"
    assert not named(log.read_text(), "study_completed")


@contextlib.contextmanager
def started(argv: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The runner, its stderr in ``log``; SIGKILLed if still running when the test is done."""
    with log.open("w") as out:
        runner = subprocess.Popen(argv, env=env, cwd=REPO, stderr=out)
    try:
        yield runner
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()


def test_sigterm_leaves_no_process_of_a_programs_behind(tmp_path: Path) -> None:
    # A shell with a child: killing the trial killed the shell, and its `sleep` trained on alone.
    marker = f"{random.randint(10**5, 10**6)}.5"
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"""
name: orphans
objective: {{metric: score, goal: minimize}}
space: [{{name: x, type: real, low: 0, high: 1}}]
budget: {{max_trials: 2, parallel: 2}}
trial: {{kind: program, command: "bash -c 'sleep {marker}; echo kubetune: score={{x}}'"}}
""")  # fmt: skip
    log = tmp_path / "run.log"
    with log.open("w") as out:
        runner = subprocess.Popen([KUBETUNE, "run", str(spec), "--store", str(tmp_path / "store")],
                                  cwd=tmp_path, stderr=out)  # fmt: skip
    wait_for("both sleeps to start", lambda: len(sleeping(marker)) == 2, 60)
    runner.send_signal(signal.SIGTERM)
    assert runner.wait(timeout=30) == EXIT_TERMINATED
    assert sleeping(marker) == []


def sleeping(marker: str) -> list[int]:
    """The processes running ``sleep <marker>``."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[:2] == [b"sleep", marker.encode()]:
            found.append(int(cmdline.parent.name))
    return found


# --- in the cluster ------------------------------------------------------------------------------

STUDY = "kills"
# Long enough that five short lives cannot finish it: with one GPU, each runs
# about one trial and queues the next before it is killed.
TRIALS = 20


@dataclass(frozen=True)
class Kill:
    pod: str
    graceful: bool  # kubectl delete (SIGTERM, then SIGKILL after the grace period) or --grace-period=0
    held_lease: bool  # the pod had taken the Lease when it was killed


@pytest.mark.cluster
@pytest.mark.slow
def test_controller_pod_deleted_five_times_the_study_completes_each_trial_once(
    rig: cl.Rig, kubectl: Kubectl, bucket: str
) -> None:
    rest, namespace, node = rig.rest, rig.namespace, rig.node
    store = f"gs://{bucket}/{STUDY}"
    study = {
        "name": STUDY,
        "optimizer": {"n_initial_points": 3, "random_state": 0},
        "budget": {"max_trials": TRIALS, "parallel": 2, "max_failed": 2},
        "trial": {"epochs": 1},
    }
    rng = random.Random(2)
    kills: list[Kill] = []
    tokens: set[str] = set()
    with rig.recorder() as recorder:
        rig.install(store, study, sleeps(TRIALS, seed=2))
        for graceful in (True, False, True, True, False):
            pod = wait_new_controller_running(rest, namespace, {k.pod for k in kills})
            tokens |= cl.pod_tokens(node, rest.get(f"/api/v1/namespaces/{namespace}/pods/{pod}"))
            # A container's Python takes seconds to import: kill it at a random
            # point of its life as a controller, not while it still starts.
            wait_for(f"{pod} to reach the Lease", lambda: at_lease(node, namespace, pod), 60)  # noqa: B023
            time.sleep(rng.uniform(0.5, 3.0))
            assert cl.finished(cl.controller_job(rest, namespace)) is None, "the study ended too soon"
            held = bool(named(controller_log(node, namespace, pod), "lease_acquired"))
            grace = [] if graceful else ["--grace-period=0", "--force"]
            kubectl("delete", "pod", pod, "-n", namespace, "--wait=false", *grace)
            kills.append(Kill(pod, graceful, held))
        # After five failures the Job controller holds the next pod back 160 s; then
        # 20 trials in containers on one GPU.
        job = cl.wait_controller_finished(rest, namespace, timeout_s=480)
        uids = recorder.added()

    killed = [k.pod for k in kills]
    left = controller_pods(rest, namespace)  # the deleted ones are gone from the API
    logs = {pod: controller_log(node, namespace, pod) for pod in killed + left}
    assert cl.finished(job) == "Complete", "\n".join(text[-2000:] for text in logs.values())
    [last] = left  # one new pod per kill, no more
    assert_consistent(open_store(store), TRIALS)
    # Six controllers in turn wrote the Study's status: it says what the records say, and each
    # one found the Study already owning their Job.
    shown = rest.get(f"/apis/kubetune.dev/v1alpha1/namespaces/{namespace}/studies/{STUDY}")["status"]
    best = json.loads(open_store(store).get("best.json"))["best"]
    assert (shown["phase"], shown["progress"]) == ("Completed", f"{TRIALS}/{TRIALS}"), shown
    assert (shown["best"]["index"], shown["best"]["value"]) == (best["index"], best["value"]), shown
    assert [r["kind"] for r in job["metadata"]["ownerReferences"]] == ["Study"]
    trial_jobs = {name: ids for name, ids in uids.items() if name.startswith(f"{STUDY}-")}
    assert sorted(trial_jobs) == [f"{STUDY}-{i:06d}" for i in range(TRIALS)]
    assert all(len(ids) == 1 for ids in trial_jobs.values()), trial_jobs
    # A pod stopped by SIGTERM released the Lease on its way out: its successor never waited.
    for kill, successor in zip(kills, [*killed[1:], last], strict=True):
        if kill.graceful and kill.held_lease:
            assert "kubetune: stopped by SIGTERM" in logs[kill.pod].splitlines()[-3:], logs[kill.pod][-2000:]
            assert not named(logs[successor], "lease_waiting"), f"{successor} waited after {kill}"
        assert named(logs[successor], "lease_acquired"), successor
    assert_no_credentials(logs, tokens)


def controller_pods(rest: Rest, namespace: str) -> list[str]:
    return [str(p["metadata"]["name"]) for p in cl.pods(rest, namespace, cl.CONTROLLER)]


def at_lease(node: Node, namespace: str, pod: str) -> bool:
    log = controller_log(node, namespace, pod)
    return bool(named(log, "lease_acquired") or named(log, "lease_waiting"))


def controller_log(node: Node, namespace: str, pod: str) -> str:
    return node.logs(namespace, pod)


def wait_new_controller_running(rest: Rest, namespace: str, killed: set[str]) -> str:
    def running() -> str | None:
        for pod in cl.pods(rest, namespace, cl.CONTROLLER):
            if pod["metadata"]["name"] not in killed and cl.phase(pod) == "Running":
                return str(pod["metadata"]["name"])
        return None

    # The Job controller holds a replacement back 10 s after a pod failure, doubling each time.
    return wait_for("a new controller pod Running", running, 240, interval_s=0.1)
