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
    env: list[dict[str, Any]] = field(default_factory=list)
    podSecurityContext: dict[str, Any] = field(default_factory=lambda: dict(POD_SECURITY_CONTEXT))
    securityContext: dict[str, Any] = field(default_factory=lambda: dict(CONTAINER_SECURITY_CONTEXT))

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
        return settings


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
    job_labels = {**labels, **value_labels(req.params)}
    metadata: dict[str, Any] = {
        "name": job_name(req.study, req.index, req.attempt),
        "namespace": namespace,
        "labels": job_labels,
        "annotations": {PARAMS_ANNOTATION: json.dumps(req.params, sort_keys=True)},
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
        "template": {"metadata": {"labels": labels}, "spec": _pod_spec(req, settings)},
    }
    if settings.activeDeadlineSeconds is not None:
        spec["activeDeadlineSeconds"] = settings.activeDeadlineSeconds
    if settings.ttlSecondsAfterFinished is not None:
        spec["ttlSecondsAfterFinished"] = settings.ttlSecondsAfterFinished
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": spec}


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
    }
    pod.update({k: v for k, v in optional.items() if v})
    return pod
