"""The Helm chart, rendered by a real helm: the objects it makes, the values it refuses.

Server-side checks (admission, Pod Security, RBAC) against the test apiserver
live in tests/cluster/test_chart_apply.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubetune import cli
from kubetune import spec as specmod
from kubetune.contract import MEASURED_METRICS, TrialRequest
from kubetune.errors import StudyFailed, UsageError
from kubetune.kinds import CNN, CnnSettings
from kubetune.kinds.program import ProgramSettings
from kubetune.kubernetes.job import JobSettings, build_job
from kubetune.settings import Setting, settings_of
from kubetune.spec import Budget, Confirm, OptimizerSettings, Spec, Stopping, parse_spec
from tests import REPO

CHART = REPO / "charts" / "kubetune"
CUSTOM = REPO / "tests" / "data" / "values-custom.yaml"
STORE = "gs://kubetune-test/studies/fmnist"
RELEASE = "tune"
NAMESPACE = "ml"

Obj = dict[str, Any]
Render = Callable[..., list[Obj]]

# The contract with the launcher: job.yaml has exactly these keys, in this order.
JOB_SETTINGS_KEYS = [
    "image", "imagePullPolicy", "imagePullSecrets", "gpus", "gpuResource", "nodeSelector",
    "tolerations", "affinity", "resources", "serviceAccountName", "activeDeadlineSeconds",
    "backoffLimit", "ttlSecondsAfterFinished", "pendingTimeoutSeconds", "queueTimeoutSeconds", "env",
    "podSecurityContext",
    "securityContext", "jobLabels", "jobAnnotations", "podLabels", "podAnnotations", "priorityClassName",
    "kueueQueueName", "kueuePriorityClass",
]  # fmt: skip


@pytest.fixture(scope="session")
def helm(cluster_assets: Path) -> Path:
    binary = cluster_assets / "helm"
    assert binary.is_file(), f"{binary}: not built by tests/cluster/build-binaries.sh"
    return binary


def run_helm(helm: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm), *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture(scope="session")
def render(helm: Path) -> Render:
    """`helm template` -> the parsed objects; fails the test with helm's message."""

    def _render(*args: str | Path, release: str = RELEASE, namespace: str = NAMESPACE) -> list[Obj]:
        proc = run_helm(helm, "template", release, CHART, "--namespace", namespace, *args)
        assert proc.returncode == 0, proc.stderr
        return [d for d in yaml.safe_load_all(proc.stdout) if d]

    return _render


@pytest.fixture(scope="session")
def default_objs(render: Render) -> list[Obj]:
    return render("--set", f"store={STORE}")


@pytest.fixture(scope="session")
def custom_objs(render: Render) -> list[Obj]:
    return render("-f", CUSTOM)


def one(objs: list[Obj], kind: str, component: str | None = None) -> Obj:
    found = [
        o
        for o in objs
        if o["kind"] == kind
        and (component is None or o["metadata"]["labels"]["app.kubernetes.io/component"] == component)
    ]
    assert len(found) == 1, f"{len(found)} {kind} objects"
    return found[0]


def config_files(objs: list[Obj]) -> tuple[str, Obj]:
    data = one(objs, "ConfigMap")["data"]
    assert set(data) == {"study.yaml", "job.yaml"}
    return data["study.yaml"], yaml.safe_load(data["job.yaml"])


# --- lint and the object set --------------------------------------------------


@pytest.mark.parametrize(
    "values", [["--set", f"store={STORE}"], ["-f", str(CUSTOM)]], ids=["default", "custom"]
)
def test_helm_lint_strict_passes(helm: Path, values: list[str]) -> None:
    proc = run_helm(helm, "lint", "--strict", CHART, *values)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("fixture", ["default_objs", "custom_objs"])
def test_renders_the_expected_objects_all_labelled(request: pytest.FixtureRequest, fixture: str) -> None:
    objs: list[Obj] = request.getfixturevalue(fixture)
    assert sorted(o["kind"] for o in objs) == sorted(
        ["ServiceAccount", "Role", "RoleBinding", "ConfigMap", "Job", "Pod"]
    )
    for o in objs:
        meta = o["metadata"]
        assert meta["namespace"] == NAMESPACE, meta["name"]
        labels = meta["labels"]
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/name"] == "kubetune"
        assert labels["app.kubernetes.io/version"] == "0.1.0"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["helm.sh/chart"] == "kubetune-0.1.0"
        assert labels["app.kubernetes.io/component"] in {"controller", "test"}
        assert "ownerReferences" not in meta


def test_release_name_prefixes_objects_and_fits_job_names(render: Render) -> None:
    long = "a" * 53
    objs = render("--set", f"store={STORE}", release=long)
    job = one(objs, "Job")
    assert len(job["metadata"]["name"]) <= 63
    assert job["metadata"]["name"].endswith("-controller")
    assert one(render("--set", f"store={STORE}", release="kubetune"), "Job")["metadata"]["name"] == (
        "kubetune-controller"
    )


@pytest.mark.parametrize("name", ["1234", "on", "1e3", "true"])
def test_label_values_that_yaml_reads_as_numbers_or_booleans_stay_strings(render: Render, name: str) -> None:
    objs = render("--set", f"store={STORE}", "--set-string", f"study.name={name}", release=name)
    for o in objs:
        labels = o["metadata"]["labels"]
        assert all(isinstance(v, str) for v in labels.values()), (o["kind"], labels)
        assert labels["app.kubernetes.io/instance"] == name
    job = one(objs, "Job")
    assert job["metadata"]["labels"]["kubetune.dev/study"] == name
    assert job["spec"]["template"]["metadata"]["labels"]["kubetune.dev/study"] == name
    text, _ = config_files(objs)
    assert parse_spec(text).name == name


# --- RBAC -----------------------------------------------------------------------


@pytest.mark.parametrize("fixture", ["default_objs", "custom_objs"])
def test_role_is_least_privilege(request: pytest.FixtureRequest, fixture: str) -> None:
    objs: list[Obj] = request.getfixturevalue(fixture)
    assert not [o for o in objs if o["kind"].startswith("Cluster")], "nothing cluster-scoped"
    role = one(objs, "Role")
    rules = {
        (group, resource): sorted(rule["verbs"])
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    assert rules == {
        ("batch", "jobs"): sorted(["get", "list", "watch", "create", "delete", "patch"]),
        ("", "pods"): ["get", "list", "watch"],
        ("", "events"): ["create", "patch"],
        ("events.k8s.io", "events"): ["create", "patch"],
        ("coordination.k8s.io", "leases"): ["create", "get", "update"],
        # With a queue only: why Kueue evicted a trial, from its Workload.
        **({("kueue.x-k8s.io", "workloads"): ["get", "list"]} if fixture == "custom_objs" else {}),
    }
    flat = json.dumps(role["rules"])
    assert "*" not in flat and "secrets" not in flat
    assert all(set(rule) == {"apiGroups", "resources", "verbs"} for rule in role["rules"])

    binding = one(objs, "RoleBinding")
    sa = one(objs, "ServiceAccount")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"],
    }  # fmt: skip
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": NAMESPACE}
    ]


def test_service_account_annotations_and_no_token_by_default(custom_objs: list[Obj]) -> None:
    sa = one(custom_objs, "ServiceAccount")
    assert sa["metadata"]["name"] == "tuner"
    assert sa["metadata"]["annotations"] == {
        "iam.gke.io/gcp-service-account": "kubetune@my-project.iam.gserviceaccount.com"
    }
    assert sa["automountServiceAccountToken"] is False


def test_existing_service_account_and_no_rbac(render: Render) -> None:
    objs = render(
        "--set", f"store={STORE}", "--set", "serviceAccount.create=false",
        "--set", "serviceAccount.name=shared", "--set", "rbac.create=false",
    )  # fmt: skip
    assert sorted(o["kind"] for o in objs) == ["ConfigMap", "Job", "Pod"]
    assert one(objs, "Job")["spec"]["template"]["spec"]["serviceAccountName"] == "shared"
    assert config_files(objs)[1]["serviceAccountName"] == "shared"


# --- Pod Security: restricted ---------------------------------------------------

# Volume types the restricted profile allows.
RESTRICTED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
    "persistentVolumeClaim", "projected", "secret",
}  # fmt: skip


def restricted_violations(pod: Obj) -> list[str]:
    """The Pod Security Standard "restricted" (v1.36), as a list of what breaks it."""
    bad: list[str] = []
    psc = pod.get("securityContext") or {}
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            bad.append(key)
    for vol in pod.get("volumes") or []:
        kinds = set(vol) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            bad.append(f"volume {vol['name']}: {kinds}")
    if psc.get("runAsUser") == 0:
        bad.append("pod runAsUser 0")
    containers = [*(pod.get("initContainers") or []), *pod["containers"]]
    for c in containers:
        sc = c.get("securityContext") or {}
        name = c["name"]
        if sc.get("privileged"):
            bad.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            bad.append(f"{name}: allowPrivilegeEscalation must be false")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            bad.append(f"{name}: capabilities.drop must include ALL")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            bad.append(f"{name}: capabilities.add")
        if not sc.get("runAsNonRoot", psc.get("runAsNonRoot")):
            bad.append(f"{name}: runAsNonRoot")
        if sc.get("runAsUser") == 0:
            bad.append(f"{name}: runAsUser 0")
        seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            bad.append(f"{name}: seccompProfile {seccomp}")
        if any(p.get("hostPort") for p in c.get("ports") or []):
            bad.append(f"{name}: hostPort")
    return bad


def pod_specs(objs: list[Obj]) -> Iterator[tuple[str, Obj]]:
    for o in objs:
        if o["kind"] == "Pod":
            yield o["metadata"]["name"], o["spec"]
        elif o["kind"] == "Job":
            yield o["metadata"]["name"], o["spec"]["template"]["spec"]


@pytest.mark.parametrize("fixture", ["default_objs", "custom_objs"])
def test_every_pod_meets_restricted_pss_with_read_only_root(
    request: pytest.FixtureRequest, fixture: str
) -> None:
    objs: list[Obj] = request.getfixturevalue(fixture)
    specs = dict(pod_specs(objs))
    assert len(specs) == 2
    for name, pod in specs.items():
        assert restricted_violations(pod) == [], name
        assert pod["securityContext"]["runAsUser"] == 65532
        volumes = {v["name"]: v for v in pod["volumes"]}
        for c in pod["containers"]:
            assert c["securityContext"]["readOnlyRootFilesystem"] is True, name
            tmp = [m for m in c["volumeMounts"] if m["mountPath"] == "/tmp"]
            assert tmp and "emptyDir" in volumes[tmp[0]["name"]], f"{name}: /tmp must be an emptyDir"


def test_trial_jobs_from_the_rendered_settings_meet_restricted_pss(custom_objs: list[Obj]) -> None:
    # The launcher builds trial pods from job.yaml: they must pass the same
    # namespace policy as the controller, or a restricted namespace runs no trial.
    _, job_yaml = config_files(custom_objs)
    settings = JobSettings(**job_yaml)
    req = TrialRequest(STORE, "fmnist-small", 7, {"learning_rate": 0.01}, CnnSettings(), "val_loss")
    pod = build_job(req, settings, namespace=NAMESPACE)["spec"]["template"]["spec"]
    assert restricted_violations(pod) == []


# --- the controller Job ------------------------------------------------------------


def test_controller_job_runs_the_contract_command(default_objs: list[Obj]) -> None:
    job = one(default_objs, "Job")
    assert job["metadata"]["name"] == f"{RELEASE}-kubetune-controller"
    assert job["metadata"]["labels"]["kubetune.dev/study"] == "fashion-mnist"
    assert job["spec"]["backoffLimit"] == 6
    tmpl = job["spec"]["template"]
    pod = tmpl["spec"]
    assert tmpl["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
    assert len(tmpl["metadata"]["annotations"]["checksum/config"]) == 64
    assert pod["restartPolicy"] == "Never"  # podFailurePolicy needs it
    assert pod["serviceAccountName"] == one(default_objs, "ServiceAccount")["metadata"]["name"]
    assert pod["automountServiceAccountToken"] is True  # the controller talks to the API
    [c] = pod["containers"]
    assert c["image"] == "ghcr.io/kubetune/controller:0.1.0"
    assert c["command"] == [
        "kubetune", "run", "/etc/kubetune/study.yaml", "--store", STORE,
        "--launcher", "kubernetes", "--job-settings", "/etc/kubetune/job.yaml",
    ]  # fmt: skip
    env = {e["name"]: e for e in c["env"]}
    assert list(env) == [
        "KUBETUNE_NAMESPACE",
        "KUBETUNE_POD_NAME",
        "KUBETUNE_OWNER_JOB",
        "KUBETUNE_LOG_FORMAT",
    ]
    assert env["KUBETUNE_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["KUBETUNE_POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    # The Job controller labels its pods with the Job's name: the owner, exactly.
    assert env["KUBETUNE_OWNER_JOB"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.labels['batch.kubernetes.io/job-name']"
    )
    assert env["KUBETUNE_LOG_FORMAT"]["value"] == "json"
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    [config] = [v for v in pod["volumes"] if v["name"] == mounts["/etc/kubetune"]]
    assert config["configMap"]["name"] == one(default_objs, "ConfigMap")["metadata"]["name"]
    assert "nodeSelector" not in pod and "tolerations" not in pod  # no GPU node needed


def test_controller_job_fails_at_once_on_a_failed_study_and_ignores_disruptions(
    default_objs: list[Obj],
) -> None:
    # The exit codes the rules name are the CLI's: bad input, a failed study, SIGTERM.
    rules = one(default_objs, "Job")["spec"]["podFailurePolicy"]["rules"]
    fail, sigterm, disrupted = rules
    assert fail["action"] == "FailJob"
    assert fail["onExitCodes"] == {
        "containerName": "controller",
        "operator": "In",
        "values": [UsageError.exit_code, StudyFailed.exit_code],
    }
    assert sigterm["action"] == "Ignore"
    assert sigterm["onExitCodes"]["values"] == [cli.EXIT_TERMINATED]
    assert disrupted == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}


def test_controller_job_custom(custom_objs: list[Obj]) -> None:
    job = one(custom_objs, "Job")
    pod = job["spec"]["template"]["spec"]
    [c] = pod["containers"]
    assert job["spec"]["backoffLimit"] == 3
    assert job["metadata"]["labels"]["kubetune.dev/study"] == "fmnist-small"
    assert c["image"] == "registry.example.com/ml/kubetune-controller:2024.1"
    assert c["command"][4] == "gs://kubetune-test/studies/small"
    assert c["env"][-1] == {"name": "STORAGE_EMULATOR_HOST", "value": "http://127.0.0.1:4443"}
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["serviceAccountName"] == "tuner"
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}  # controller.nodeSelector, not the GPU pool
    # controller.labels, on the Job and its pod; never Kueue's queue, which is the trials'.
    for labels in (job["metadata"]["labels"], job["spec"]["template"]["metadata"]["labels"]):
        assert labels["team"] == "vision" and labels["app.kubernetes.io/component"] == "controller"
        assert not any(k.startswith("kueue.x-k8s.io/") for k in labels)


def test_config_checksum_follows_the_config(render: Render) -> None:
    def checksum(*args: str) -> str:
        job = one(render("--set", f"store={STORE}", *args), "Job")
        return str(job["spec"]["template"]["metadata"]["annotations"]["checksum/config"])

    assert checksum() == checksum()
    assert checksum() != checksum("--set", "study.budget.max_trials=61")
    assert checksum() != checksum("--set", "gpu.count=2")


# --- the ConfigMap: study.yaml and job.yaml ------------------------------------------


def test_default_study_is_the_notebook(default_objs: list[Obj]) -> None:
    study, _ = config_files(default_objs)
    assert parse_spec(study) == Spec()
    assert list(yaml.safe_load(study)) == list(Spec().to_dict())  # the spec's own order


def test_values_yaml_study_block_matches_spec_defaults() -> None:
    # values.yaml spells the notebook out for users to edit: it must not drift from kubetune/spec.py.
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    canonical = Spec().to_dict()
    # null in values.yaml, so that a values file changing the space (or the
    # metric) does not inherit a default that no longer fits: see values.yaml.
    assert values["study"].pop("x0") is None and canonical.pop("x0") == list(Spec.x0)
    assert values["study"]["objective"].pop("goal") is None
    assert canonical["objective"].pop("goal") == CNN.metrics[canonical["objective"]["metric"]]
    assert values["study"] == canonical


def test_custom_study_and_parallelism_override(custom_objs: list[Obj]) -> None:
    study, _ = config_files(custom_objs)
    spec = parse_spec(study)
    assert spec.name == "fmnist-small"
    assert spec.budget.parallel == 3  # values.parallelism, over study.budget.parallel: 1
    assert spec.budget.max_trials == 12
    assert spec.objective.metric == "val_loss"
    assert [d.name for d in spec.space] == ["learning_rate", "num_dense_nodes"]
    assert spec.x0 == ({"learning_rate": 0.001, "num_dense_nodes": 64},)


def test_changing_only_the_metric_takes_its_direction(render: Render) -> None:
    objs = render("--set", f"store={STORE}", "--set", "study.objective.metric=val_loss")
    assert parse_spec(config_files(objs)[0]).objective == specmod.Objective("val_loss", "minimize")


def test_parallelism_null_keeps_the_study_budget(render: Render) -> None:
    objs = render("--set", f"store={STORE}", "--set", "study.budget.parallel=4")
    assert parse_spec(config_files(objs)[0]).budget.parallel == 4


def test_floats_from_set_reach_the_spec(render: Render) -> None:
    # --set keeps floats as strings; the schema and kubetune/spec.py accept them as numbers.
    objs = render(
        "--set", f"store={STORE}", "--set", "study.trial.validation_split=0.2",
        "--set", "study.space[0].name=learning_rate,study.space[0].type=real",
        "--set", "study.space[0].low=1e-4,study.space[0].high=0.05",
    )  # fmt: skip
    spec = parse_spec(config_files(objs)[0])
    assert isinstance(spec.trial, CnnSettings)
    assert spec.trial.validation_split == 0.2
    assert spec.space == (specmod.Real("learning_rate", 1e-4, 0.05),)
    assert spec.x0 == ()  # the notebook's point needs the notebook's space


def test_job_settings_default(default_objs: list[Obj]) -> None:
    _, job = config_files(default_objs)
    assert list(job) == JOB_SETTINGS_KEYS
    assert job == {
        "image": "ghcr.io/kubetune/trial:0.1.0",
        "imagePullPolicy": "IfNotPresent",
        "imagePullSecrets": [],
        "gpus": 1,
        "gpuResource": "nvidia.com/gpu",
        "nodeSelector": {},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {},
        "resources": {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"memory": "6Gi"}},
        "serviceAccountName": one(default_objs, "ServiceAccount")["metadata"]["name"],
        "activeDeadlineSeconds": 3600,
        "backoffLimit": 0,
        "ttlSecondsAfterFinished": 86400,
        "pendingTimeoutSeconds": 900,
        "queueTimeoutSeconds": None,
        "env": [],
        # Trial pods get the same security contexts as the controller, from values.
        "podSecurityContext": {
            "runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "jobLabels": {}, "jobAnnotations": {}, "podLabels": {}, "podAnnotations": {},
        "priorityClassName": "", "kueueQueueName": "", "kueuePriorityClass": "",
    }  # fmt: skip


def test_job_settings_custom(custom_objs: list[Obj], tmp_path: Path) -> None:
    _, job = config_files(custom_objs)
    assert list(job) == JOB_SETTINGS_KEYS
    assert job["image"] == "registry.example.com/ml/kubetune-trial:2024.1"
    assert job["imagePullPolicy"] == "Always"
    assert job["imagePullSecrets"] == [{"name": "regcred"}]
    assert job["gpus"] == 2
    assert job["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert job["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"},
    ]
    assert job["serviceAccountName"] == "tuner"
    assert (job["activeDeadlineSeconds"], job["pendingTimeoutSeconds"], job["queueTimeoutSeconds"]) == (
        1800, 600, 7200,
    )  # fmt: skip
    assert job["env"] == [{"name": "STORAGE_EMULATOR_HOST", "value": "http://127.0.0.1:4443"}]
    assert job["jobLabels"] == {"team": "vision", "example.com/cost-center": "ml-42"}
    assert job["jobAnnotations"] == {"example.com/owner": "ana@example.com"}
    assert job["podLabels"] == {"sidecar.istio.io/inject": "false"}
    assert job["podAnnotations"] == {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}
    assert (job["priorityClassName"], job["kueueQueueName"], job["kueuePriorityClass"]) == (
        "batch-low", "gpu-queue", "low",
    )  # fmt: skip
    # The launcher reads it as written (it refuses unknown keys).
    path = tmp_path / "job.yaml"
    path.write_text(one(custom_objs, "ConfigMap")["data"]["job.yaml"])
    assert JobSettings.load(path) == JobSettings(**job)


def test_large_integers_render_as_integers(render: Render) -> None:
    # Helm reads values as float64, and Go prints 1e+06 for a million: the chart converts.
    objs = render("--set", f"store={STORE}", "--set-json", "trial.activeDeadlineSeconds=1000000")
    assert config_files(objs)[1]["activeDeadlineSeconds"] == 1_000_000


SHARED = "cloud.google.com/gke-gpu-sharing-strategy"
CLIENTS = "cloud.google.com/gke-max-shared-clients-per-gpu"
L4 = {"cloud.google.com/gke-accelerator": "nvidia-l4"}


@pytest.mark.parametrize(("strategy", "clients"), [("time-sharing", 4), ("mps", 0)])
def test_gpu_sharing_pins_trials_to_a_pool_that_shares_its_gpus(
    render: Render, strategy: str, clients: int
) -> None:
    sharing = {"strategy": strategy, "maxClientsPerGpu": clients}
    objs = render("--set", f"store={STORE}", "--set-json", f"nodeSelector={json.dumps(L4)}",
                  "--set-json", f"gpu.sharing={json.dumps(sharing)}")  # fmt: skip
    _, job = config_files(objs)
    expected = {**L4, SHARED: strategy, **({CLIENTS: str(clients)} if clients else {})}
    assert job["nodeSelector"] == expected
    pod = build_job(TrialRequest(STORE, "s", 0, {}, CnnSettings(), "val_accuracy"), JobSettings(**job),
                    namespace="n")["spec"]["template"]["spec"]  # fmt: skip
    assert pod["nodeSelector"] == expected
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"  # one share
    controller = one(objs, "Job")["spec"]["template"]["spec"]
    assert SHARED not in controller.get("nodeSelector", {})


def test_cpu_only_cluster(render: Render) -> None:
    objs = render("--set", f"store={STORE}", "--set", "gpu.count=0", "--set-json", "tolerations=[]")
    _, job = config_files(objs)
    assert (job["gpus"], job["tolerations"]) == (0, [])


# --- values the chart refuses -------------------------------------------------------


def space(**dim: object) -> list[str]:
    """Helm args setting a one-dimension study space."""
    return ["--set-json", "study.space=" + json.dumps([dim])]


NODES = "num_dense_nodes"
BAD_VALUES = [
    # (id, helm args, text the error must contain)
    ("store-missing", [], "/store"),
    ("store-s3", ["--set", "store=s3://x"], "/store"),
    ("store-relative", ["--set", "store=studies/x"], "/store"),
    ("name-not-dns", ["--set", "study.name=Bad_Name"], "/study/name"),
    ("name-too-long", ["--set", f"study.name={'a' * 41}"], "/study/name"),
    ("gpu-negative", ["--set", "gpu.count=-1"], "/gpu/count"),
    ("gpu-fraction", ["--set-json", "gpu.count=1.5"], "/gpu/count"),
    ("parallelism-zero", ["--set", "parallelism=0"], "/parallelism"),
    ("unknown-top-level", ["--set", "paralelism=2"], "'paralelism' not allowed"),
    ("unknown-study-key", ["--set", "study.budgets.max_trials=2"], "'budgets' not allowed"),
    ("parallel-zero", ["--set", "study.budget.parallel=0"], "/study/budget/parallel"),
    ("parallel-negative", ["--set", "study.budget.parallel=-2"], "/study/budget/parallel"),
    ("max-trials-string", ["--set", "study.budget.max_trials=ten"], "/study/budget/max_trials"),
    ("max-trials-zero", ["--set", "study.budget.max_trials=0"], "/study/budget/max_trials"),
    ("metric-unknown", ["--set", "study.objective.metric=f1"], "/study/objective/metric"),
    ("constraint-unbounded", ["--set-json", 'study.constraints=[{"metric": "param_count"}]'],
     "/study/constraints/0"),
    ("objectives-metric-unknown",
     ["--set-json", 'study.objectives=[{"metric": "val_accuracy"}, {"metric": "f1"}]'],
     "/study/objectives/1/metric"),
    ("goal-unknown", ["--set", "study.objective.goal=max"], "/study/objective/goal"),
    ("acq-unknown", ["--set", "study.optimizer.acq_func=UCB"], "/study/optimizer/acq_func"),
    ("space-empty", ["--set-json", "study.space=[]"], "/study/space"),
    ("space-name", space(name="momentum", type="real", low=0, high=1), "/study/space/0/name"),
    ("space-type", space(name=NODES, type="int", low=1, high=9), "/study/space/0/type"),
    ("space-integer-bounds", space(name=NODES, type="integer", low=1.5, high=9), "/study/space/0/low"),
    ("space-categorical-values", space(name=NODES, type="categorical"), "values"),
    ("space-extra-key", space(name=NODES, type="integer", low=1, high=9, prior="uniform"),
     "'prior' not allowed"),
    ("space-prior-unknown", space(name="learning_rate", type="real", low=0.1, high=1, prior="normal"),
     "/study/space/0/prior"),
    ("space-log-uniform-zero", space(name="learning_rate", type="real", low=0, high=1, prior="log-uniform"),
     "/study/space/0/low"),
    ("validation-split", ["--set-json", "study.trial.validation_split=1"], "/study/trial/validation_split"),
    ("epochs-boolean", ["--set-json", "study.trial.epochs=true"], "/study/trial/epochs"),
    ("precision-unknown", ["--set", "study.trial.precision=float16"], "/study/trial/precision"),
    ("space-low-nan", space(name="learning_rate", type="real", low="nan", high=1), "/study/space/0/low"),
    ("x0-unknown-param", ["--set-json", 'study.x0=[{"momentum":0.1}]'], "'momentum' not allowed"),
    ("pull-policy", ["--set", "trialImage.pullPolicy=Sometimes"], "/trialImage/pullPolicy"),
    ("trial-backoff", ["--set", "trial.backoffLimit=-1"], "/trial/backoffLimit"),
    # Helm names a key refused by propertyNames, not always its path.
    ("trial-label-own", ["--set-json", 'trial.labels={"kubetune.dev/study":"x"}'], "'kubetune.dev/study'"),
    ("trial-label-kueue", ["--set-json", 'trial.labels={"kueue.x-k8s.io/queue-name":"q"}'],
     "'kueue.x-k8s.io/queue-name'"),
    ("trial-label-value", ["--set-json", 'trial.podLabels={"team":"two words"}'], "/trial/podLabels/team"),
    ("trial-annotation-number", ["--set-json", 'trial.annotations={"a":1}'], "/trial/annotations/a"),
    ("controller-label-helm", ["--set-json", 'controller.labels={"helm.sh/chart":"x"}'], "'helm.sh/chart'"),
    ("kueue-queue-name", ["--set", "kueue.queueName=gpu queue"], "/kueue/queueName"),
    ("gpu-sharing-strategy", ["--set", "gpu.sharing.strategy=mig"], "/gpu/sharing/strategy"),
    ("gpu-sharing-one-client", ["--set-json", 'gpu.sharing={"strategy":"mps","maxClientsPerGpu":1}'],
     "/gpu/sharing/maxClientsPerGpu"),
    # Cross-field rules, checked by the templates (JSON schema cannot compare fields).
    ("parallelism-over-budget", ["--set", "parallelism=61"], "study.budget.parallel"),
    ("low-not-below-high", space(name=NODES, type="integer", low=9, high=9), "study.space[0].low"),
    ("gpu-sharing-two-gpus", ["--set", "gpu.sharing.strategy=time-sharing", "--set", "gpu.count=2"],
     "gpu.count: a shared GPU gives each trial one share"),
    ("gpu-sharing-clients-alone", ["--set", "gpu.sharing.maxClientsPerGpu=4"],
     "gpu.sharing.maxClientsPerGpu: set with gpu.sharing.strategy only"),
]  # fmt: skip
TEMPLATE_CHECKED = ("study.", "gpu.count:", "gpu.sharing.maxClientsPerGpu:")


@pytest.mark.parametrize(("args", "needle"), [c[1:] for c in BAD_VALUES], ids=[c[0] for c in BAD_VALUES])
def test_bad_values_fail_at_template_time_naming_the_field(helm: Path, args: list[str], needle: str) -> None:
    store = [] if any(a.startswith("store=") for a in args) or args == [] else ["--set", f"store={STORE}"]
    proc = run_helm(helm, "template", RELEASE, CHART, *store, *args)
    assert proc.returncode != 0, f"accepted: {args}"
    assert needle in proc.stderr, proc.stderr
    # The schema answers all but the cross-field rules, which the templates check.
    by_schema = not needle.startswith(TEMPLATE_CHECKED)
    assert ("don't meet the specifications of the schema" in proc.stderr) == by_schema, proc.stderr
    assert proc.stdout == ""


def test_schema_enums_mirror_the_spec() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert schema["additionalProperties"] is False
    study = schema["properties"]["study"]["properties"]
    item = study["space"]["items"]["properties"]
    cnn = schema["properties"]["study"]["else"]["properties"]  # a study that is not a program's
    assert cnn["space"]["items"]["properties"]["name"]["enum"] == list(CNN.hyperparameters)
    assert item["prior"]["enum"] == list(specmod.PRIORS)
    assert study["name"]["pattern"] == specmod.NAME_RE.pattern
    assert study["name"]["maxLength"] == specmod.NAME_MAX
    assert cnn["objective"]["properties"]["metric"]["enum"] == list(CNN.metrics)
    # A program's metric is its own; the CNN's are the kind's (the else branch).
    assert study["objective"]["properties"]["metric"]["type"] == "string"
    assert study["objective"]["properties"]["goal"]["enum"] == ["maximize", "minimize", None]
    opt = study["optimizer"]["properties"]
    assert opt["base_estimator"]["enum"] == list(specmod.BASE_ESTIMATORS)
    assert opt["acq_func"]["enum"] == list(specmod.ACQ_FUNCS)
    assert opt["initial_point_generator"]["enum"] == list(specmod.INITIAL_POINT_GENERATORS)
    assert set(cnn["x0"]["items"]["properties"]) == set(CNN.hyperparameters)
    assert set(opt) == set(Spec().to_dict()["optimizer"])
    assert list(study) == list(specmod.TOP_FIELDS)
    # Several objectives and constraints: the CNN's metrics, and those kubetune measures.
    measured = list(MEASURED_METRICS)
    assert cnn["objectives"]["items"]["properties"]["metric"]["enum"] == [*CNN.metrics, *measured]
    assert cnn["constraints"]["items"]["properties"]["metric"]["enum"] == [*CNN.metrics, *measured]


# A number may come as a string: --set keeps floats as strings, and the spec reads them.
NUMBER = {"type": ["number", "string"], "pattern": r"^[-+]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][-+]?[0-9]+)?$"}


def schema_of(s: Setting) -> dict[str, Any]:
    """The schema a declared setting must have in values.schema.json."""
    out: dict[str, Any]
    if s.yaml_kind is list:
        out = {"type": "array", "items": {"type": "string", "minLength": 1}}
    elif s.rule.choices is not None:
        out = {"enum": list(s.rule.choices)}
    elif s.kind is float:
        out = dict(NUMBER)
    else:
        out = {"type": {int: "integer", str: "string"}[s.kind]}
    if s.optional:
        out["type"] = [*([out["type"]] if isinstance(out["type"], str) else out["type"]), "null"]
    if s.rule.minimum is not None:
        out["minimum"] = s.rule.minimum
    if s.rule.maximum is not None:
        out["maximum"] = s.rule.maximum
    if s.rule.between is not None:
        out["exclusiveMinimum"], out["exclusiveMaximum"] = s.rule.between
    if s.rule.help:
        out["description"] = s.rule.help
    return out


# The trial section is either kind's: the CNN's settings, or a program's (with its kind).
SECTIONS = {"optimizer": [OptimizerSettings], "budget": [Budget], "stopping": [Stopping],
            "confirm": [Confirm],
            "trial": [CnnSettings, ProgramSettings]}  # fmt: skip


@pytest.mark.parametrize(("section", "classes"), SECTIONS.items())
def test_schema_sections_are_the_declared_settings(section: str, classes: list[type]) -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    props = schema["properties"]["study"]["properties"][section]
    assert props["additionalProperties"] is False
    declared = {s.name: schema_of(s) for cls in classes for s in settings_of(cls)}
    if section == "trial":
        assert props["properties"].pop("kind")["enum"] == ["cnn", "program"]
    assert props["properties"] == declared


def test_a_program_study_keeps_only_its_own_trial_settings(render: Render) -> None:
    trial = {"kind": "program", "command": "python train.py --lr {lr}", "image": "registry.example/mine:1"}
    space = [{"name": "lr", "type": "real", "low": 0.001, "high": 0.1}]
    study = {
        "name": "mine",
        "objective": {"metric": "score", "goal": "minimize"},
        "space": space,
        "trial": trial,
    }
    objs = render("--set", f"store={STORE}", "--set-json", f"study={json.dumps(study)}")
    text, _ = config_files(objs)
    spec = parse_spec(text)
    assert yaml.safe_load(text)["trial"] == trial  # the CNN's defaults from values.yaml are gone
    assert spec.kind.name == "program" and vars(spec.trial)["command"] == trial["command"]


# --- NOTES.txt and the helm test hook --------------------------------------------------

STUDY_API = ("--api-versions", "kubetune.dev/v1alpha1/Study")  # the chart's CRD, installed


def test_a_multi_objective_study_renders_its_objectives_and_constraints(render: Render) -> None:
    objectives = [
        {"metric": "val_accuracy", "goal": "maximize"},
        {"metric": "param_count", "goal": "minimize"},
    ]
    constraints = [{"metric": "gpu_seconds", "max": 600}]
    objs = render("--set", f"store={STORE}", "--set-json", f"study.objectives={json.dumps(objectives)}",
                  "--set-json", f"study.constraints={json.dumps(constraints)}")  # fmt: skip
    text, _ = config_files(objs)
    assert "objective" not in yaml.safe_load(text)  # values.yaml's single objective gives way
    spec = parse_spec(text)
    assert spec.objectives == (
        specmod.Objective("val_accuracy", "maximize"),
        specmod.Objective("param_count", "minimize"),
    )
    assert spec.constraints == (specmod.Constraint("gpu_seconds", max=600.0),)


def test_notes_show_how_to_watch_and_pull_results(helm: Path, tmp_path: Path) -> None:
    # `helm template` skips NOTES.txt: render it through `tpl` into a ConfigMap in a copy of the chart.
    chart = tmp_path / "kubetune"
    shutil.copytree(CHART, chart)
    shutil.copy(chart / "templates" / "NOTES.txt", chart / "notes.txt")
    (chart / "templates" / "notes.yaml").write_text(
        'kind: ConfigMap\ndata:\n  notes: |\n{{ tpl (.Files.Get "notes.txt") . | indent 4 }}\n'
    )
    proc = run_helm(
        helm, "template", RELEASE, chart, "--namespace", NAMESPACE, "-f", CUSTOM,
        "--show-only", "templates/notes.yaml", *STUDY_API,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    notes = yaml.safe_load(proc.stdout)["data"]["notes"]
    ns = f"-n {NAMESPACE}"
    assert f"kubectl get studies {ns} -w" in notes
    assert f"kubectl get study fmnist-small {ns} -o jsonpath='{{.status.best.params}}'" in notes
    assert f"kubectl describe study fmnist-small {ns}" in notes
    assert f"kubetune status study/fmnist-small {ns}" in notes
    assert f"kubectl delete study fmnist-small {ns}" in notes
    assert f"kubectl get jobs,pods {ns} -l kubetune.dev/study=fmnist-small -w" in notes
    assert (
        f"kubectl get jobs {ns} -l kubetune.dev/study=fmnist-small "
        "-L kubetune.dev/val_loss,kubetune.dev/learning_rate,kubetune.dev/num_dense_nodes"
    ) in notes
    assert f"kubectl logs {ns} job/{RELEASE}-kubetune-controller -f" in notes
    assert f"kubectl describe {ns} job {RELEASE}-kubetune-controller" in notes
    assert "kubetune best gs://kubetune-test/studies/small" in notes
    assert "gsutil cat gs://kubetune-test/studies/small/best.json" in notes
    assert "3 at a time" in notes


def test_helm_test_pod_runs_status_with_the_release_identity(custom_objs: list[Obj]) -> None:
    pod = one(custom_objs, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Never"
    assert spec["serviceAccountName"] == "tuner"
    assert spec["automountServiceAccountToken"] is False
    [c] = spec["containers"]
    assert c["image"] == "registry.example.com/ml/kubetune-controller:2024.1"
    assert c["command"] == ["kubetune", "status", "gs://kubetune-test/studies/small"]
    assert c["env"] == [{"name": "STORAGE_EMULATOR_HOST", "value": "http://127.0.0.1:4443"}]


# --- manifests/ ---------------------------------------------------------------------------


def test_manifests_match_a_fresh_render(helm: Path) -> None:
    proc = subprocess.run(
        ["make", "--no-print-directory", "-f", "mk/chart.mk", "check-manifests", f"HELM={helm}"],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, f"run `make manifests`:\n{proc.stdout}{proc.stderr}"


def test_manifests_are_plain_objects_without_the_test_hook() -> None:
    text = (REPO / "manifests" / "kubetune.yaml").read_text()
    assert text.startswith("# kubetune:")
    objs = [d for d in yaml.safe_load_all(text) if d]
    assert sorted(o["kind"] for o in objs) == sorted(
        ["ServiceAccount", "Role", "RoleBinding", "ConfigMap", "Job"]
    )
    assert "helm.sh/hook" not in text
    assert all(o["metadata"]["namespace"] == "kubetune" for o in objs)
    job = one(objs, "Job")
    assert (
        "gs://change-me/studies/fashion-mnist" in job["spec"]["template"]["spec"]["containers"][0]["command"]
    )


# --- spot GPU pools ---------------------------------------------------------------------------


def test_the_spot_example_puts_trials_on_spot_and_keeps_the_controller_off(render: Render) -> None:
    objs = render("--set", f"store={STORE}", "-f", str(REPO / "examples" / "gke-spot-values.yaml"))
    study, job = config_files(objs)
    assert job["nodeSelector"] == {"cloud.google.com/gke-spot": "true"}
    spot = {"key": "cloud.google.com/gke-spot", "operator": "Equal", "value": "true", "effect": "NoSchedule"}
    assert spot in job["tolerations"]
    settings = JobSettings(**job)
    pod = build_job(TrialRequest(STORE, "s", 0, {}, CnnSettings(), "val_accuracy"), settings, namespace="n")
    assert pod["spec"]["template"]["spec"]["nodeSelector"] == {"cloud.google.com/gke-spot": "true"}
    controller = one(objs, "Job")["spec"]["template"]["spec"]
    [term] = controller["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert term["matchExpressions"] == [{"key": "cloud.google.com/gke-spot", "operator": "DoesNotExist"}]
    assert "tolerations" not in controller or spot not in controller["tolerations"]
    budget = parse_spec(study).budget
    assert (budget.max_retries, budget.retry_backoff_s) == (5, 60)


def test_the_dws_example_queues_each_trial_for_a_provisioned_node(render: Render) -> None:
    objs = render("--set", f"store={STORE}", "-f", str(REPO / "examples" / "gke-dws-values.yaml"))
    study, job = config_files(objs)
    settings = JobSettings(**job)
    trial = build_job(TrialRequest(STORE, "s", 0, {}, CnnSettings(), "val_accuracy"), settings, namespace="n")
    assert trial["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "dws-local-queue"
    assert trial["spec"]["suspend"] is True  # Kueue admits it once DWS has provisioned its node
    # DWS holds the node longer than the trial may run.
    held = int(trial["metadata"]["annotations"]["provreq.kueue.x-k8s.io/maxRunDurationSeconds"])
    assert held > trial["spec"]["activeDeadlineSeconds"]
    pool = {"cloud.google.com/gke-nodepool": "dws-l4-pool"}
    assert trial["spec"]["template"]["spec"]["nodeSelector"] == pool
    assert settings.queueTimeoutSeconds == 86400
    rules = one(objs, "Role")["rules"]
    assert any("workloads" in rule["resources"] for rule in rules)  # to record why Kueue evicted a trial
    assert parse_spec(study).budget.parallel == 4


# --- the Study resource (kubetune.dev/v1alpha1) ----------------------------------------------


def test_the_study_object_carries_the_study_where_its_crd_is_installed(render: Render) -> None:
    objs = render("--set", f"store={STORE}", *STUDY_API)
    study = one(objs, "Study")
    text, _ = config_files(objs)
    assert study["metadata"]["name"] == parse_spec(text).name
    assert {**study["spec"], "name": study["metadata"]["name"]} == yaml.safe_load(text)  # the ConfigMap's
    [controller] = one(objs, "Job")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in controller["env"]}
    assert env["KUBETUNE_STUDY_RESOURCE"] == study["metadata"]["name"]
    # The controller may read its own Study and write its status, and no other's.
    rules = [r for r in one(objs, "Role")["rules"] if r["apiGroups"] == ["kubetune.dev"]]
    assert {(r["resources"][0], tuple(r["verbs"])) for r in rules} == {
        ("studies", ("get",)), ("studies/status", ("get", "patch")),
    }  # fmt: skip
    assert all(r["resourceNames"] == [study["metadata"]["name"]] for r in rules)


@pytest.mark.parametrize("args", [(), ("--set", "studyResource.enabled=false", *STUDY_API)],
                         ids=["no CRD (--skip-crds)", "turned off"])  # fmt: skip
def test_without_the_study_object_nothing_asks_for_it(render: Render, args: tuple[str, ...]) -> None:
    objs = render("--set", f"store={STORE}", *args)
    assert not [o for o in objs if o["kind"] == "Study"]
    env = {e["name"] for e in one(objs, "Job")["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "KUBETUNE_STUDY_RESOURCE" not in env
    assert not [r for r in one(objs, "Role")["rules"] if r["apiGroups"] == ["kubetune.dev"]]
