"""Which failures are the infrastructure's (retried, never charged) and which the trial's: every cause."""

from __future__ import annotations

import typing

import pytest

from kubetune.controller.failures import classify
from kubetune.launcher import Cause

TABLE: dict[str, str] = {
    "succeeded": "trial",  # not a failure at all: never asked, but never retried either
    "exit": "trial",  # the training failed: its code, a NaN, a malformed record
    "signal": "trial",  # locally: the OOM killer or a kill from outside, indistinguishable
    "oom": "trial",  # depends on the parameters: the same point would fail again
    "deadline": "trial",  # ran past activeDeadlineSeconds: too slow at this point
    "unknown": "trial",  # no pod says why: not retried on a guess
    "stopped": "trial",  # the study stopped it (early stopping): never retried
    "evicted": "infrastructure",  # Eviction API, node pressure
    "preempted": "infrastructure",  # spot reclaim, or a higher-priority pod
    "node_lost": "infrastructure",
    "queue_evicted": "infrastructure",  # Kueue took its quota back (preemption, pods-ready timeout)
    "deleted": "infrastructure",  # its Job deleted from outside (a drain script, a person)
    "unschedulable": "infrastructure",  # not scheduled within pendingTimeoutSeconds (or queueTimeoutSeconds)
    "image": "infrastructure",  # the image could not be pulled
}


def test_the_table_names_every_cause_the_launchers_produce() -> None:
    assert set(TABLE) == set(typing.get_args(Cause))


@pytest.mark.parametrize(("cause", "kind"), TABLE.items())
def test_classify(cause: Cause, kind: str) -> None:
    assert classify(cause) == kind
