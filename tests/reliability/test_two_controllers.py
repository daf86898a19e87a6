"""Two controllers on one study, as when a new pod starts while the old one still terminates.

Three real ``kubetune run --launcher kubernetes`` processes against the test
apiserver (admin kubeconfig, KUBETUNE_NAMESPACE), their trials real Jobs run by
the test node (the fake trial image). Only the Lease holder launches trials; the other waits. The
holder is SIGKILLed: the waiting one takes over once the Lease expires. The new
holder is SIGTERMed: it releases the Lease, and the third takes over at once.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import IO

import pytest
import yaml

from kubetune.cli import EXIT_TERMINATED
from kubetune.store import open_store
from tests.polling import wait_for
from tests.reliability import rig as cl
from tests.reliability.checks import KUBETUNE, assert_consistent, events, named

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

STUDY = "twins"
TRIALS = 8
LEASE_S = 15  # kubetune.lease.Lease's duration_s
POLL_S = 2  # how often a waiting controller tries the Lease
SPEC = f"""
name: {STUDY}
optimizer: {{n_initial_points: 3, random_state: 0}}
budget: {{max_trials: {TRIALS}, parallel: 2, max_failed: 2}}
trial: {{epochs: 1}}
"""


class Controller:
    """One `kubetune run --launcher kubernetes` process and its log."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], folder: Path) -> None:
        self.name = name
        self.log_path = folder / f"{name}.log"
        self._out: IO[str] = self.log_path.open("w")
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=self._out)

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    def has(self, event: str) -> bool:
        return bool(named(self.log, event))

    def launched(self) -> list[int]:
        return [int(e["index"]) for e in named(self.log, "trial_started")]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self._out.close()


def test_only_the_lease_holder_launches_and_the_other_takes_over(
    rig: cl.Rig, bucket: str, tmp_path: Path
) -> None:
    # The kubelet runs the trial Jobs; the controllers are processes here.
    store = f"gs://{bucket}/{STUDY}"
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    job_settings = tmp_path / "job.yaml"
    job_settings.write_text(
        yaml.safe_dump(
            {
                "image": rig.bed.fake_trial_image,  # pre-loaded into the node
                "gpus": 1,
                "tolerations": [cl.GPU_TOLERATION],
                "env": rig.bed.trial_env({"default": {"sleep": 1.5}}),
            }
        )
    )
    env = rig.bed.controller_env(rig.namespace, KUBETUNE_LOG_FORMAT="json")
    argv = [KUBETUNE, "run", str(spec), "--store", store, "--launcher", "kubernetes",
            "--job-settings", str(job_settings)]  # fmt: skip
    run = Runs(argv, env, tmp_path)
    with rig.recorder() as recorder, run:
        a = run.start("a")
        wait_for("a to launch a trial", lambda: a.has("lease_acquired") and a.launched(), 60)
        b = run.start("b")
        wait_for("b to wait for the Lease", lambda: b.has("lease_waiting"), 60)
        wait_for("a to launch two more trials", lambda: len(a.launched()) >= 3, 60)
        assert not b.launched() and not b.has("study_started"), "b acted without the Lease"

        a.proc.send_signal(signal.SIGKILL)  # the holder dies: nothing releases its Lease
        killed = time.monotonic()
        wait_for("b to take the Lease over", lambda: b.has("lease_acquired"), LEASE_S + POLL_S + 15)
        # Not before the Lease expired (the last renewal was at most LEASE_S/3 before the kill).
        assert LEASE_S * 2 / 3 - 1 <= time.monotonic() - killed <= LEASE_S + POLL_S + 5

        c = run.start("c")
        wait_for("c to wait for the Lease", lambda: c.has("lease_waiting"), 60)
        wait_for("b to launch a trial", lambda: b.launched(), 60)
        b.proc.send_signal(signal.SIGTERM)  # the holder stops: it releases the Lease on its way out
        stopped = time.monotonic()
        assert b.proc.wait(timeout=10) == EXIT_TERMINATED
        wait_for("c to take the Lease over", lambda: c.has("lease_acquired"), POLL_S + 10)
        assert time.monotonic() - stopped < POLL_S + 3  # no waiting for the Lease to expire
        assert c.proc.wait(timeout=180) == 0, c.log[-3000:]
        uids = recorder.added()

    assert_consistent(open_store(store), TRIALS)
    assert sorted(uids) == [f"{STUDY}-{i:06d}" for i in range(TRIALS)]
    assert all(len(ids) == 1 for ids in uids.values()), uids  # no Job created twice
    for ctl in run.started.values():  # nobody launched before it held the Lease
        order = [e["event"] for e in events(ctl.log)]
        if "trial_started" in order:
            assert order.index("lease_acquired") < order.index("trial_started"), ctl.name
    lease = rig.rest.get(f"/apis/coordination.k8s.io/v1/namespaces/{rig.namespace}/leases/kubetune-{STUDY}")
    assert not lease["spec"].get("holderIdentity")  # released by the last holder
    assert lease["spec"]["leaseTransitions"] >= 2


class Runs:
    """Starts named controllers; kills any still running on exit."""

    def __init__(self, argv: list[str], env: dict[str, str], folder: Path) -> None:
        self.argv, self.env, self.folder = argv, env, folder
        self.started: dict[str, Controller] = {}

    def start(self, name: str) -> Controller:
        self.started[name] = Controller(name, self.argv, self.env, self.folder)
        return self.started[name]

    def __enter__(self) -> Runs:
        return self

    def __exit__(self, *exc: object) -> None:
        for ctl in self.started.values():
            ctl.close()
