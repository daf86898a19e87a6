"""The Job builder: one batch/v1 Job per trial, as a plain manifest.

Pure functions, no API calls: what a trial's Job looks like is decided here
and only here, and tests can read it without a cluster. The labels make
``kubectl get jobs,pods -l kubetune.dev/study=NAME`` list one study, and
``-L kubetune.dev/<metric>,kubetune.dev/<param>`` a leaderboard.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from kubetune import kinds, names
from kubetune.contract import ATTEMPT_ENV, ParamValue, TrialRequest, trial_command
from kubetune.errors import UsageError

STUDY_LABEL = names.key(names.STUDY)
TRIAL_LABEL = names.key(names.TRIAL)
ATTEMPT_LABEL = names.key(names.ATTEMPT)
STATUS_LABEL = names.key(names.STATUS)
EPOCH_LABEL = names.key(names.EPOCH)
PARAMS_ANNOTATION = names.key(names.PARAMS)
DATA_DIR = "/data/tensorflow_datasets"
# Labels copied from the controller's Job, so `-l app.kubernetes.io/instance=RELEASE`
# lists the controller and its trials together.
INHERITED_LABELS = ("app.kubernetes.io/instance", "app.kubernetes.io/part-of")
# Prefixes of the label and annotation keys kubetune and its chart set: a user's may not use them.
RESERVED_PREFIXES = (names.GROUP, "app.kubernetes.io", "helm.sh")
# Kueue's labels on a Job: the LocalQueue that admits it, its WorkloadPriorityClass.
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
KUEUE_PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"
KUEUE_SETTINGS = {KUEUE_QUEUE_LABEL: "kueueQueueName", KUEUE_PRIORITY_LABEL: "kueuePriorityClass"}
# Label and annotation keys: an optional DNS-subdomain prefix and '/', then a label name.
_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE_BAD = re.compile(r"[^A-Za-z0-9._-]")
# The restricted Pod Security Standard, as uid/gid 65532 (the image's user);
# the chart passes its podSecurityContext/containerSecurityContext values instead.
POD_SECURITY_CONTEXT: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": 65532,
    "runAsGroup": 65532,
    "fsGroup": 65532,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY_CONTEXT: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


@dataclass(frozen=True)
class JobSettings:
    """How trial Jobs run; the chart renders these into ``job.yaml``.

    Field names are the Kubernetes ones (camelCase), as users write them in values.
    """

    image: str = "kubetune-trial:latest"
    imagePullPolicy: str = "IfNotPresent"
    imagePullSecrets: list[dict[str, str]] = field(default_factory=list)
    gpus: int = 1
    gpuResource: str = "nvidia.com/gpu"
    nodeSelector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    affinity: dict[str, Any] = field(default_factory=dict)
    resources: dict[str, Any] = field(default_factory=dict)
    serviceAccountName: str | None = None
    activeDeadlineSeconds: int | None = 3600
    backoffLimit: int = 0
    ttlSecondsAfterFinished: int | None = 86400
    pendingTimeoutSeconds: int = 900
    queueTimeoutSeconds: int | None = None  # None: a trial may wait in its queue for ever
    env: list[dict[str, Any]] = field(default_factory=list)
    podSecurityContext: dict[str, Any] = field(default_factory=lambda: dict(POD_SECURITY_CONTEXT))
    securityContext: dict[str, Any] = field(default_factory=lambda: dict(CONTAINER_SECURITY_CONTEXT))
    # The user's own metadata, beside kubetune's (which it may not replace): cost labels, a
    # scheduler's or a queue's, a sidecar injector's annotations.
    jobLabels: dict[str, str] = field(default_factory=dict)
    jobAnnotations: dict[str, str] = field(default_factory=dict)
    podLabels: dict[str, str] = field(default_factory=dict)
    podAnnotations: dict[str, str] = field(default_factory=dict)
    priorityClassName: str | None = None
    # Kueue: the LocalQueue that admits trial Jobs, and their WorkloadPriorityClass.
    kueueQueueName: str | None = None
    kueuePriorityClass: str | None = None

    @classmethod
    def load(cls, path: str | Path) -> JobSettings:
        try:
            doc = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise UsageError(f"{path}: cannot read job settings ({exc})") from None
        if not isinstance(doc, dict):
            raise UsageError(f"{path}: job settings must be a mapping")
        known = {f.name for f in fields(cls)}
        for key in doc:
            if key not in known:
                raise UsageError(f"{path}: {key}: unknown job setting")
        settings = cls(**{k: v for k, v in doc.items() if v is not None})
        if not isinstance(settings.gpus, int) or settings.gpus < 0:
            raise UsageError(f"{path}: gpus: must be an integer >= 0, got {settings.gpus!r}")
        problem = metadata_problem(settings)
        if problem:
            raise UsageError(f"{path}: {problem}")
        return settings


def metadata_problem(settings: JobSettings) -> str | None:
    """What is wrong with the user's labels and annotations, in one line naming the setting; None if nothing.

    Checked when the settings load, not when the API server refuses each trial's Job: a label
    kubetune sets itself (the study's, the trial's) would move the Job out of the controller's
    watch, which would take it for deleted and launch the trial again.
    """
    for setting, values, are_labels in (
        ("jobLabels", settings.jobLabels, True),
        ("podLabels", settings.podLabels, True),
        ("jobAnnotations", settings.jobAnnotations, False),
        ("podAnnotations", settings.podAnnotations, False),
    ):
        if not isinstance(values, dict):
            return f"{setting}: must be a mapping of names to strings, got {type(values).__name__}"
        for key, value in values.items():
            problem = _key_problem(key) or _value_problem(value, are_labels)
            if problem:
                return f"{setting}.{key}: {problem}"
    for setting, name in (("kueueQueueName", settings.kueueQueueName),
                          ("kueuePriorityClass", settings.kueuePriorityClass)):  # fmt: skip
        problem = None if name is None else _value_problem(name, True)
        if problem:
            return f"{setting}: {problem}"
    return None


def _key_problem(key: object) -> str | None:
    if not isinstance(key, str):
        return f"a key must be a string, got {type(key).__name__}"
    prefix, _, name = key.rpartition("/")
    if prefix in RESERVED_PREFIXES:
        return f"{prefix}/ keys are kubetune's own (its watches and selectors find its Jobs by them)"
    if key in KUEUE_SETTINGS:
        return f"set it with {KUEUE_SETTINGS[key]}"
    if prefix and (len(prefix) > 253 or not _PREFIX.match(prefix)):
        return "the prefix before '/' is not a DNS subdomain"
    if not names.is_label_name(name):
        return "is not a label name (at most 63 letters, digits, '-', '_' and '.', alphanumeric at both ends)"
    return None


def _value_problem(value: object, label: bool) -> str | None:
    if not isinstance(value, str):
        return f"must be a string, got {type(value).__name__} (quote it in YAML)"
    # A label value has a label name's syntax, or is empty.
    if label and value and not names.is_label_name(value):
        return f"{value!r} is not a label value (at most 63 letters, digits, '-', '_' and '.')"
    return None


def job_name(study: str, index: int, attempt: int = 0) -> str:
    """Deterministic per attempt, so a restarted controller finds (never duplicates) a trial's Job.

    Study names are at most 40 characters: this stays within a DNS label's 63.
    """
    return f"{study}-{index:06d}" + (f"-r{attempt}" if attempt else "")


def label_value(value: ParamValue | float) -> str:
    """A parameter or metric as a label value: <= 63 of [A-Za-z0-9._-], alphanumeric ends."""
    text = f"{value:.6g}" if isinstance(value, float) else str(value)
    text = _LABEL_VALUE_BAD.sub("_", text.replace("-", "m") if text.startswith("-") else text)
    return text[:63].strip("._-")


def value_labels(values: Mapping[str, ParamValue | float], taken: Iterable[str] = ()) -> dict[str, str]:
    """``kubetune.dev/NAME`` labels for parameters or metrics; a name that is kubetune's own
    (``kubetune.names``), not a label name, or among ``taken`` (a parameter's, for a metric) is left off."""
    skip = set(taken)
    kept = sorted((k, v) for k, v in values.items() if names.user_label(k) and k not in skip)
    return {names.key(k): label_value(v) for k, v in kept}


def trial_labels(req: TrialRequest) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "kubetune",
        "app.kubernetes.io/component": "trial",
        "app.kubernetes.io/managed-by": "kubetune",
        STUDY_LABEL: req.study,
        TRIAL_LABEL: str(req.index),
        ATTEMPT_LABEL: str(req.attempt),
    }


def kueue_labels(settings: JobSettings) -> dict[str, str]:
    queue = {KUEUE_QUEUE_LABEL: settings.kueueQueueName, KUEUE_PRIORITY_LABEL: settings.kueuePriorityClass}
    return {k: v for k, v in queue.items() if v}


def build_job(
    req: TrialRequest,
    settings: JobSettings,
    *,
    namespace: str,
    owner: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The Job manifest for one trial. ``owner`` is the controller's own Job object."""
    owner_labels = (owner or {}).get("metadata", {}).get("labels") or {}
    labels = {**trial_labels(req), **{k: v for k, v in owner_labels.items() if k in INHERITED_LABELS}}
    # The user's keys first, so that kubetune's own always win (the loader refuses clashes).
    job_labels = {**settings.jobLabels, **kueue_labels(settings), **labels, **value_labels(req.params)}
    metadata: dict[str, Any] = {
        "name": job_name(req.study, req.index, req.attempt),
        "namespace": namespace,
        "labels": job_labels,
        "annotations": {**settings.jobAnnotations, PARAMS_ANNOTATION: json.dumps(req.params, sort_keys=True)},
    }
    if owner is not None:
        metadata["ownerReferences"] = [
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "name": owner["metadata"]["name"],
                "uid": owner["metadata"]["uid"],
            }
        ]
    spec: dict[str, Any] = {
        "backoffLimit": settings.backoffLimit,
        "completions": 1,
        "parallelism": 1,
        "template": {"metadata": _pod_metadata(settings, labels), "spec": _pod_spec(req, settings)},
    }
    if settings.kueueQueueName:
        # Created suspended, as Kueue's own samples are: its webhook would suspend the Job too,
        # but a pod started before that (the webhook late, or failing open) holds a GPU unqueued.
        # `kubectl get jobs -L kubetune.dev/status` shows it queued; running once admitted.
        spec["suspend"] = True
        job_labels[STATUS_LABEL] = "queued"
    if settings.activeDeadlineSeconds is not None:
        spec["activeDeadlineSeconds"] = settings.activeDeadlineSeconds
    if settings.ttlSecondsAfterFinished is not None:
        spec["ttlSecondsAfterFinished"] = settings.ttlSecondsAfterFinished
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": spec}


def _pod_metadata(settings: JobSettings, labels: dict[str, str]) -> dict[str, Any]:
    metadata: dict[str, Any] = {"labels": {**settings.podLabels, **labels}}
    if settings.podAnnotations:
        metadata["annotations"] = dict(settings.podAnnotations)
    return metadata


def _pod_spec(req: TrialRequest, settings: JobSettings) -> dict[str, Any]:
    # Quantities are strings in the API ("2", "4Gi"); YAML may have given numbers.
    resources = {k: {name: str(q) for name, q in v.items()} for k, v in settings.resources.items()}
    if settings.gpus > 0:
        resources.setdefault("limits", {})[settings.gpuResource] = str(settings.gpus)
    env = [
        {"name": "KUBETUNE_LOG_FORMAT", "value": "json"},
        {"name": "KUBETUNE_DATA_DIR", "value": DATA_DIR},
        {"name": ATTEMPT_ENV, "value": str(req.attempt)},
        *settings.env,
    ]
    kind = kinds.of(req.settings)
    container = {
        "name": "trial",
        # A kind may name its own image in its settings (a program's trial.image); else the chart's.
        "image": kind.setting(req.settings, kind.image) or settings.image,
        "imagePullPolicy": settings.imagePullPolicy,
        # The whole argv, not args to an entrypoint: exactly what a local trial runs.
        "command": trial_command(req, kind.subcommand),
        "env": env,
        "resources": resources,
        "securityContext": settings.securityContext,
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, {"name": "data", "mountPath": "/data"}],
    }
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        # Trials talk to the bucket, never to the Kubernetes API.
        "automountServiceAccountToken": False,
        "securityContext": settings.podSecurityContext,
        "containers": [container],
        # Bounded, so one trial cannot fill a node's disk (the dataset is ~40 MB).
        "volumes": [
            {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
            {"name": "data", "emptyDir": {"sizeLimit": "2Gi"}},
        ],
    }
    optional = {
        "serviceAccountName": settings.serviceAccountName,
        "nodeSelector": settings.nodeSelector,
        "tolerations": settings.tolerations,
        "affinity": settings.affinity,
        "imagePullSecrets": settings.imagePullSecrets,
        "priorityClassName": settings.priorityClassName,
    }
    pod.update({k: v for k, v in optional.items() if v})
    return pod
