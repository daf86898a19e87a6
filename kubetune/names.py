"""The names kubetune writes under ``kubetune.dev/`` on Kubernetes objects, and which names a user may add.

Trial Jobs carry kubetune's own labels (``kubetune.dev/study``, ``trial``,
...) and one label per parameter and reported metric
(``kubetune.dev/learning_rate``), so ``kubectl get jobs -L`` is a
leaderboard. A parameter or metric under a name of kubetune's own would
overwrite that label: a Job whose ``study`` label changed leaves the
controller's watch, which would take it for deleted and launch the trial a
second time while the first still holds its GPU. So every key kubetune
uses is declared here, the spec refuses parameters and objectives named
like one, and metrics reported at run time under such a name are recorded
but never put on a Job. Shared by the spec and the controller's Kubernetes
side, so both hold the same list.
"""

from __future__ import annotations

import re

GROUP = "kubetune.dev"

# Labels and annotations kubetune puts under GROUP on trial Jobs (and, for the
# study-wide ones, the controller's Job).
STUDY = "study"
TRIAL = "trial"
ATTEMPT = "attempt"
STATUS = "status"
EPOCH = "epoch"
PARAMS = "params"
RESERVED = frozenset({STUDY, TRIAL, ATTEMPT, STATUS, EPOCH, PARAMS})

# The name part of a label key: at most 63 characters of [A-Za-z0-9._-], alphanumeric at both ends.
LABEL_NAME_MAX = 63
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


def key(name: str) -> str:
    """The label or annotation key ``kubetune.dev/NAME``."""
    return f"{GROUP}/{name}"


def label_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be the name part of a ``kubetune.dev/`` label of a user's; None when it can."""
    if name in RESERVED:
        return f"is reserved (kubetune labels its trial Jobs {key(name)})"
    if len(name) > LABEL_NAME_MAX:
        return f"is {len(name)} characters long; a label name holds at most {LABEL_NAME_MAX}"
    if not is_label_name(name):
        return "is not a label name (letters, digits, '-', '_' and '.', a letter or digit at both ends)"
    return None


def is_label_name(name: str) -> bool:
    """Whether ``name`` is the name part of a Kubernetes label or annotation key."""
    return len(name) <= LABEL_NAME_MAX and bool(_LABEL_NAME.match(name))


def user_label(name: str) -> bool:
    """Whether a parameter or metric ``name`` may be put on a Job as ``kubetune.dev/NAME``."""
    return label_name_problem(name) is None
