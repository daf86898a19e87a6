"""The Kubernetes side of the controller: trial Jobs, their watches, what kubectl shows, the Lease.

Only the controller imports this package, and only with ``--launcher kubernetes``.
``connect`` gives the launcher and the observer a controller pod uses, from
its in-cluster credentials (or a kubeconfig).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from kubetune.kubernetes.api import api_client, own_namespace, owner_job
from kubetune.kubernetes.job import JobSettings, build_job, job_name
from kubetune.kubernetes.launcher import KubernetesLauncher
from kubetune.kubernetes.lease import Lease
from kubetune.kubernetes.observer import JobObserver
from kubetune.kubernetes.study_resource import StudyResource, attach, own, read_study
from kubetune.kubernetes.tracker import Tracker


def connect(
    study: str, settings: JobSettings, params: Iterable[str] = (), weighed: Iterable[str] = ()
) -> tuple[KubernetesLauncher, JobObserver]:
    """A controller's launcher and observer, in its namespace, owned by its Job (``KUBETUNE_OWNER_JOB``);
    ``weighed``: the metrics besides the objective a finished trial's Job is labelled with."""
    api = api_client()
    namespace = own_namespace()
    owner = owner_job(api, namespace, os.environ.get("KUBETUNE_OWNER_JOB"))
    observer = JobObserver(api, namespace, study, owner, params, weighed)
    return KubernetesLauncher(api, namespace, settings, owner), observer


def study_resource(store: str, observer: JobObserver) -> StudyResource | None:
    """The Study object the chart made for this study (``KUBETUNE_STUDY_RESOURCE``), if any: it owns
    the controller's Job, and the observer's Events are about it too."""
    name = os.environ.get("KUBETUNE_STUDY_RESOURCE")
    if not name:
        return None
    api = api_client()
    resource = attach(api, own_namespace(), name, store)
    if resource is not None:
        observer.describe_too(resource.object)
        if observer.owner is not None:
            own(api, observer.owner, resource.object)
    return resource


__all__ = [
    "JobObserver",
    "JobSettings",
    "KubernetesLauncher",
    "Lease",
    "StudyResource",
    "Tracker",
    "api_client",
    "build_job",
    "connect",
    "job_name",
    "own_namespace",
    "read_study",
    "study_resource",
]
