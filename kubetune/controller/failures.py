"""Two kinds of failure: the infrastructure's, retried; the trial's, evidence about its point.

A spot GPU node taken back, an eviction, a lost node, a queue that took its
quota back for other work (Kueue's preemption), an image that will not
pull, a pod no node could take: none says anything about the
hyperparameters, so the trial is launched again (same index, same
parameters, a new attempt) and the study is not charged. A trial that
failed by itself (its exit code, a NaN, a malformed record, its deadline)
is a failed trial. So is an OOM kill: whether a model fits in memory
depends on its parameters (layers, nodes, batch size), and trying the same
point again would fail the same way.
"""

from __future__ import annotations

from typing import Literal

from kubetune.launcher import Cause

Kind = Literal["infrastructure", "trial"]

INFRASTRUCTURE: frozenset[Cause] = frozenset(
    {"evicted", "preempted", "node_lost", "queue_evicted", "deleted", "unschedulable", "image"}
)


def classify(cause: Cause) -> Kind:
    """Whose failure a trial's exit is."""
    return "infrastructure" if cause in INFRASTRUCTURE else "trial"
