"""Bad specs, values and command lines, through the real CLI: refused before anything exists.

Each case runs ``kubetune run ... --launcher kubernetes`` against the test
apiserver and a bucket, and must exit non-zero with ONE line on stderr that
names the field and the problem, no traceback, within seconds, leaving
nothing in the cluster (no Lease, Job, pod or Event) and nothing in the store.
What Helm can catch at install time, values.schema.json and the chart's
templates catch first (tests/test_chart.py, BAD_VALUES); what only the
controller can see fails its Job at once (the last test here).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubetune.errors import UsageError
from kubetune.store import open_store
from tests.cluster.controlplane import ControlPlane
from tests.cluster.rest import Rest
from tests.gcs_emulator import FakeGCS
from tests.reliability import rig as cl
from tests.reliability.checks import KUBETUNE, run

pytestmark = pytest.mark.cluster

NOTEBOOK_POINT = {"learning_rate": 0.001, "num_dense_layers": 1, "num_dense_nodes": 12}
BUCKET = "kubetune-reliability-bad-input"


def spec(**fields: Any) -> str:
    """A valid small spec with ``fields`` replaced (None: left out)."""
    doc: dict[str, Any] = {
        "name": "bad-input",
        "budget": {"max_trials": 3, "parallel": 1},
        "trial": {"epochs": 1},
    }
    doc.update(fields)
    return yaml.safe_dump({k: v for k, v in doc.items() if v is not None}, sort_keys=False)


def real(**dim: Any) -> list[dict[str, Any]]:
    return [{"name": "learning_rate", "type": "real", **dim}]


@dataclass(frozen=True)
class Bad:
    id: str
    line: str  # the one line must contain this: the field and the problem
    spec: str = spec()
    args: tuple[str, ...] = ()  # more command-line arguments
    job: str | None = None  # --job-settings content
    store: str = "gcs"  # gcs: a prefix of the test bucket; local: a folder that must not appear
    code: int = UsageError.exit_code
    env: dict[str, str] = field(default_factory=dict)
    argv: tuple[str, ...] | None = None  # the whole command line instead ({spec}, {store})


CASES = [
    # The spec: every field named by its path.
    Bad("low-above-high", "space[0].low: must be less than high (0.1 >= 0.01)",
        spec(space=real(low=0.1, high=0.01), x0=[])),
    Bad("prior-unknown", "space[0].prior: must be one of uniform, log-uniform; got 'normal'",
        spec(space=real(low=0.001, high=0.1, prior="normal"))),
    Bad("space-empty", "space: must list at least one parameter", spec(space=[])),
    Bad("parallel-zero", "budget.parallel: must be at least 1, got 0", spec(budget={"parallel": 0})),
    Bad("parallel-negative", "budget.parallel: must be at least 1, got -3", spec(budget={"parallel": -3})),
    Bad("parallel-over-max-trials", "budget.parallel: 5 is more than budget.max_trials (3)",
        spec(budget={"max_trials": 3, "parallel": 5})),
    Bad("x0-outside-space", "x0[0].learning_rate: 0.5 is outside [1e-05, 0.1]",
        spec(x0=[{**NOTEBOOK_POINT, "learning_rate": 0.5}])),
    Bad("x0-too-short", "x0[0].num_dense_nodes: required",
        spec(x0=[{"learning_rate": 0.001, "num_dense_layers": 1}])),
    Bad("x0-too-long", "x0[0].dropout: unknown field", spec(x0=[{**NOTEBOOK_POINT, "dropout": 0.1}])),
    Bad("metric-unknown", "objective.metric: must be one of val_accuracy, val_loss",
        spec(objective={"metric": "f1"})),
    Bad("yaml-malformed", "spec.yaml: malformed YAML at line 3: expected ',' or '}'",
        "name: x\nbudget: {max_trials: 3\n"),
    Bad("type-string-for-integer", "budget.max_trials: must be an integer, got a string 'ten'",
        spec(budget={"max_trials": "ten"})),
    Bad("type-boolean-for-integer", "trial.epochs: must be an integer, got a boolean True",
        spec(trial={"epochs": True})),
    Bad("not-finite", "space[0].low: must be a finite number, got nan",
        spec(space=real(low=float("nan"), high=1))),
    Bad("field-unknown", "budgets: unknown field (did you mean 'budget'?)", spec(budgets={"max_trials": 3})),
    Bad("name-not-dns-safe", "name: 'Bad_Name' is not DNS-safe", spec(name="Bad_Name")),
    Bad("name-too-long", "name: at most 40 characters (it prefixes Job names), got 41", spec(name="a" * 41)),
    Bad("confirm-seeds-zero", "confirm.seeds: must be at least 1, got 0",
        spec(confirm={"top_k": 2, "seeds": 0})),
    # The trial Job settings (the chart's values, as job.yaml).
    Bad("gpus-negative", "gpus: must be an integer >= 0, got -1", job="gpus: -1\n"),
    Bad("job-setting-unknown", "gpu: unknown job setting", job="gpu: 1\n"),
    # The command line.
    Bad("flag-unknown", "unrecognized arguments: --paralel 3", args=("--paralel", "3")),
    Bad("launcher-unknown", "argument --launcher: invalid choice: 'slurm'", args=("--launcher", "slurm")),
    Bad("store-flag-missing", "run: the following arguments are required: --store", argv=("run", "{spec}")),
    Bad("spec-missing", "nowhere.yaml: cannot read (No such file or directory)",
        argv=("run", "/nowhere.yaml", "--store", "{store}")),
    # The store.
    Bad("store-unwritable", "cannot write: Not a directory", store="local-under-a-file", code=1),
    Bad("store-scheme-unknown", "store: unsupported URI scheme 's3'", store="s3://bucket/x", code=1),
    Bad("bucket-missing", "store gs://kubetune-nope/x: bucket 'kubetune-nope' does not exist",
        store="gs://kubetune-nope/x", code=1),
    Bad("credentials-missing", "store gs://kubetune-some-bucket/x: no Google Cloud credentials found",
        store="gs://kubetune-some-bucket/x", code=1,
        # No emulator, a key file that is not there, and no metadata server to ask.
        env={"STORAGE_EMULATOR_HOST": "", "GOOGLE_APPLICATION_CREDENTIALS": "/nonexistent/key.json",
             "NO_GCE_CHECK": "True", "GCE_METADATA_HOST": "127.0.0.1:9", "GCE_METADATA_IP": "127.0.0.1:9"}),
]  # fmt: skip


@pytest.fixture(scope="module")
def empty_bucket(gcs: FakeGCS) -> str:
    gcs.create_bucket(BUCKET)
    return BUCKET


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_in_one_line_and_creates_nothing(
    case: Bad,
    control_plane: ControlPlane,
    module_namespace: str,
    gcs: FakeGCS,
    empty_bucket: str,
    tmp_path: Path,
) -> None:
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(case.spec)
    store = store_for(case, empty_bucket, tmp_path)
    argv = [KUBETUNE, *[a.format(spec=spec_path, store=store) for a in case.argv]] if case.argv else [
        KUBETUNE, "run", str(spec_path), "--store", store, "--launcher", "kubernetes", *case.args,
    ]  # fmt: skip
    if case.job is not None:
        (tmp_path / "job.yaml").write_text(case.job)
        argv += ["--job-settings", str(tmp_path / "job.yaml")]
    # No application-default credentials either.
    env = cl.controller_env(control_plane.kubeconfig, module_namespace, gcs.host,
                            CLOUDSDK_CONFIG=str(tmp_path / "no-gcloud"))  # fmt: skip
    env.update(case.env)
    env = {k: v for k, v in env.items() if v != ""}

    started = time.monotonic()
    out = run(argv, env, timeout=60)
    elapsed = time.monotonic() - started

    assert out.returncode == case.code, out.stderr
    assert out.stderr.endswith("\n") and out.stderr.count("\n") == 1, out.stderr  # one line
    assert out.stderr.startswith("kubetune: ") and case.line in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""
    assert elapsed < 15, f"took {elapsed:.1f} s"
    assert created_in_cluster(control_plane, module_namespace) == []
    assert created_in_store(store, empty_bucket, tmp_path) == []


def store_for(case: Bad, bucket: str, tmp_path: Path) -> str:
    if case.store == "gcs":
        return f"gs://{bucket}/{case.id}"
    if case.store == "local-under-a-file":
        (tmp_path / "a-file").write_text("")
        return str(tmp_path / "a-file" / "store")
    return case.store


def created_in_cluster(control_plane: ControlPlane, namespace: str) -> list[str]:
    rest = Rest(control_plane.kubeconfig)
    paths = {
        "Lease": f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases",
        "Job": f"/apis/batch/v1/namespaces/{namespace}/jobs",
        "Pod": f"/api/v1/namespaces/{namespace}/pods",
        "Event": f"/api/v1/namespaces/{namespace}/events",
    }
    found = [f"{kind}/{o['metadata']['name']}" for kind, path in paths.items() for o in cl.items(rest, path)]
    rest.close()
    return found


def created_in_store(store: str, bucket: str, tmp_path: Path) -> list[str]:
    if store.startswith(f"gs://{bucket}/"):
        return open_store(f"gs://{bucket}").list()
    return [str(p) for p in tmp_path.rglob("*") if p.name not in ("spec.yaml", "job.yaml", "a-file")]


@pytest.mark.slow
def test_a_bad_spec_the_chart_cannot_see_fails_the_controller_job_at_once(rig: cl.Rig, bucket: str) -> None:
    # JSON schema cannot compare x0 with the space: the controller refuses it
    # (exit 2) and the podFailurePolicy fails the Job at once, with no retry.
    rig.install(f"gs://{bucket}/late", {"name": "late", "x0": [{**NOTEBOOK_POINT, "learning_rate": 0.5}]}, {})
    job = rig.wait_controller_finished(timeout_s=120)
    [failed] = [c for c in job["status"]["conditions"] if c["type"] == "Failed"]
    assert failed["reason"] == "PodFailurePolicy"
    [pod] = cl.pods(rig.rest, rig.namespace, cl.CONTROLLER)  # one try, not backoffLimit + 1
    log = rig.node.logs(rig.namespace, pod["metadata"]["name"])
    assert log == "kubetune: x0[0].learning_rate: 0.5 is outside [1e-05, 0.1]\n"
    assert open_store(f"gs://{bucket}").list() == []
