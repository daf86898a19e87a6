"""``kubetune trial``: run one trial of a kind, then write its result to the store once.

The command line and the record are defined in :mod:`kubetune.contract`; what
the trial trains, by its kind (:mod:`kubetune.kinds`), trained here by the
kind's own module.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from kubetune import kinds
from kubetune.contract import (
    ATTEMPT_ENV,
    EXIT_ALREADY_RECORDED,
    EXIT_OK,
    EXIT_TRIAL_FAILED,
    TrialRequest,
    TrialResult,
    parse_trial_args,
    result_object,
)
from kubetune.errors import KubetuneError
from kubetune.kinds import TrialKind
from kubetune.log import get_logger
from kubetune.store import AlreadyExists, NotFound, Store, Unreadable, open_store

# How a kind's trial runs (its ``trainer``): (request, store, start time, logger) -> its result record.
Train = Callable[[TrialRequest, Store, float, Any], TrialResult]


def main(argv: list[str]) -> int:
    """``kubetune trial [SUBCOMMAND] OPTIONS``: run one trial of the kind the subcommand names;
    returns a ``contract.EXIT_*`` code, or a KubetuneError's exit code."""
    started = time.time()
    try:
        kind, options = kinds.for_trial(argv)
        req = parse_trial_args(options, kind)
        train = trainer(kind)
    except KubetuneError as exc:
        get_logger("kubetune.trial").error("trial could not run", error=str(exc))
        return exc.exit_code
    log = get_logger("kubetune.trial", study=req.study, index=req.index)
    try:
        return _run(req, started, log, kind, train)
    except KubetuneError as exc:
        log.error("trial could not run", error=str(exc))
        return exc.exit_code


def trainer(kind: TrialKind) -> Train:
    """The function a kind's trials run, imported only here, on the trial side."""
    module, _, function = kind.trainer.partition(":")
    try:
        found: Train = getattr(importlib.import_module(module), function)
    except (ImportError, AttributeError) as exc:
        raise KubetuneError(
            f"trial kind {kind.name}: cannot load its trainer {kind.trainer}: {exc}"
        ) from None
    return found


def _run(req: TrialRequest, started: float, log: Any, kind: TrialKind, train: Train) -> int:
    store = open_store(req.store)
    name = result_object(req.index)
    if _exists(store, name):
        log.info("already recorded; not training", object=name)
        return EXIT_ALREADY_RECORDED
    result = replace(train(req, store, started, log), attempt=attempt_from_env())
    try:
        store.create(name, result.to_json(kind.bounds))
    except AlreadyExists:
        log.warning("already recorded by another run; result discarded", object=name)
        return EXIT_ALREADY_RECORDED
    log.info(
        "recorded",
        object=name,
        status=result.status,
        objective_value=result.objective_value,
        reason=result.reason,
        wall_time_s=result.wall_time_s,
    )
    # A pruned trial did what it was asked: stop early.
    return EXIT_TRIAL_FAILED if result.failed else EXIT_OK


def attempt_from_env() -> int | None:
    """The attempt this run is, as the launcher says (``contract.ATTEMPT_ENV``); None when it does not."""
    value = os.environ.get(ATTEMPT_ENV, "")
    return int(value) if value.isdigit() and len(value) < 6 else None


def _exists(store: Store, name: str) -> bool:
    try:
        store.get(name)
    except NotFound:
        return False
    except Unreadable:
        pass  # something is in its place: this index is not to be recorded again
    return True
