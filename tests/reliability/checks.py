"""Shared by the reliability tests: running the CLI with fake trials, reading its logs,
and what every test asks after a fault (a consistent study, honest asks, clean logs)."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from kubetune.contract import BEST_OBJECT, HISTORY_OBJECT, TrialResult
from kubetune.controller import optimizer
from kubetune.controller.history import History, read_study
from kubetune.controller.leaderboard import best_of
from kubetune.spec import Spec
from kubetune.store import Store
from tests import REPO
from tests.fake_trial import ENV as FAKE_ENV
from tests.reliability.fake_cli import SHIM_ENV

T = TypeVar("T")
PYTHON = sys.executable
KUBETUNE = str(Path(sys.executable).parent / "kubetune")


def fake_cli_env(shim: Path, fake: Mapping[str, Any], **extra: str) -> dict[str, str]:
    """Environment for ``python -m tests.reliability.fake_cli``: JSON logs, the fake trial's table."""
    return {
        **os.environ,
        "KUBETUNE_LOG_FORMAT": "json",
        SHIM_ENV: str(shim),
        FAKE_ENV: json.dumps(fake),
        "PYTHONPATH": str(REPO),
        **extra,
    }


def fake_cli(*args: str) -> list[str]:
    """argv of the real CLI whose local trials are the fake trial."""
    return [PYTHON, "-m", "tests.reliability.fake_cli", *args]


def run(argv: list[str], env: Mapping[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=dict(env), cwd=REPO, capture_output=True, text=True, timeout=timeout)


def events(log_text: str) -> list[dict[str, Any]]:
    """The structlog JSON lines of a log (anything else, such as the CLI's last line, is skipped)."""
    out = []
    for line in log_text.splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def named(log_text: str, event: str) -> list[dict[str, Any]]:
    return [e for e in events(log_text) if e.get("event") == event]


def assert_consistent(store: Store, trials: int) -> tuple[Spec, History]:
    """Every index 0..trials-1 recorded exactly once, and the views agree with the records."""
    spec, history = read_study(store)
    assert sorted(history.results) == list(range(trials)), sorted(history.results)
    assert sorted(history.launched) == list(range(trials)), sorted(history.launched)
    rows = list(csv.DictReader(io.StringIO(store.get(HISTORY_OBJECT).decode())))
    assert [int(r["index"]) for r in rows] == list(range(trials))  # each once, in order
    assert_best_is_the_best_record(store, spec, history.ordered_results())
    return spec, history


def assert_best_is_the_best_record(store: Store, spec: Spec, results: list[TrialResult]) -> None:
    best = json.loads(store.get(BEST_OBJECT))["best"]
    top = best_of(spec, results)
    assert top is not None, "no trial succeeded"
    assert best["index"] == top.index
    assert best["value"] == top.objective_value
    assert best["params"] == spec.full_params(top.params)


def assert_failures_not_told(spec: Spec, history: History) -> None:
    """Each point was asked from the successes alone, not from invented scores for failures.

    With one trial at a time, trial i was asked with trials 0..i-1 finished and
    nothing pending, so replaying ``optimizer.suggest`` must give its exact
    point; a penalty told for the failures must have changed at least one.
    """
    assert spec.budget.parallel == 1 and spec.budget.failure_penalty is None
    results = history.ordered_results()
    assert any(not r.succeeded for r in results), "no failure to leave out"
    penalised = replace(spec, budget=replace(spec.budget, failure_penalty=0.0))
    changed = 0
    for i, launch in sorted(history.launched.items()):
        before = [r for r in results if r.index < i]
        assert launch.params == optimizer.suggest(spec, i, before, []), f"trial {i} was not asked honestly"
        changed += launch.params != optimizer.suggest(penalised, i, before, [])
    assert changed > 0, "a failure penalty would have asked the same points: the check has no teeth"


# Words that belong to credentials, never to a log line of ours.
CREDENTIAL_WORDS = re.compile(r"bearer|private_key|token", re.IGNORECASE)


def assert_no_credentials(logs: Mapping[str, str], tokens: set[str]) -> None:
    """No log line holds a token (or a long piece of one) or a credential word."""
    assert tokens, "no token to look for: the check would prove nothing"
    pieces = {part for token in tokens for part in token.split(".") if len(part) >= 16} | tokens
    leaks = [
        f"{pod}:{n}: {line[:160]}"
        for pod, text in logs.items()
        for n, line in enumerate(text.splitlines(), 1)
        if CREDENTIAL_WORDS.search(line) or any(piece in line for piece in pieces)
    ]
    assert leaks == [], "\n".join(leaks[:20])
