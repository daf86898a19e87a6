"""Early stopping in a real local study: trials as processes reporting epochs to the store.

The trials are tests/fake_trial.py (learning curves that rise to a known
value), launched by the real LocalLauncher; the study loop, the rules and
the stop requests are the product's. The real CNN stopped early is
tests/e2e/test_local_study.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kubetune.contract import result_object, stop_object
from kubetune.controller.history import read_study
from kubetune.controller.study import Study
from kubetune.launcher import LocalLauncher
from kubetune.spec import parse_spec
from kubetune.store import NotFound, Store, open_store
from tests.fake_trial import ENV as FAKE_ENV
from tests.fake_trial import shim_dir

EPOCHS = 4
SPEC = """
name: stopping
space:
  - {name: learning_rate, type: real, low: 1.0e-5, high: 1.0e-1, prior: log-uniform}
optimizer: {n_initial_points: 4, random_state: 3}
budget: {max_trials: %(trials)d, parallel: 2, max_failed: 1}
stopping: %(stopping)s
trial: {epochs: %(epochs)d}
"""


def run_study(tmp_path: Path, stopping: str, fake: dict[str, Any], trials: int = 8) -> tuple[Study, Store]:
    spec = parse_spec(SPEC % {"trials": trials, "stopping": stopping, "epochs": EPOCHS})
    store = open_store(str(tmp_path / "store"))
    shim = shim_dir(tmp_path / "shim") / "kubetune"
    launcher = LocalLauncher(tmp_path / "logs", env={FAKE_ENV: json.dumps(fake)}, executable=str(shim))
    study = Study(spec, store, launcher, poll_s=0.1, epochs_poll_s=0.1)
    try:
        outcome = study.run()
    finally:
        launcher.close()
    assert outcome.completed
    return study, store


def has(store: Store, name: str) -> bool:
    try:
        store.get(name)
    except NotFound:
        return False
    return True


def test_asha_prunes_trials_through_the_store_and_never_counts_them_as_failures(tmp_path: Path) -> None:
    _, store = run_study(tmp_path, "{rule: asha, eta: 2}", {"default": {"epochs": EPOCHS, "epoch_s": 0.6}})
    _, history = read_study(store)
    pruned = [r for r in history.ordered_results() if r.pruned]
    assert pruned, "no trial was pruned"
    assert len(history.results) == 8 and history.failed == 0  # max_failed is 1: pruned are no failures
    for r in pruned:
        assert r.reason is not None and r.reason.startswith("asha: ")
        assert r.last_epoch is not None and r.last_epoch < EPOCHS
        assert has(store, stop_object(r.index))
        # Its curve in the store ends where it stopped.
        assert max(history.epochs[r.index]) == r.last_epoch
    for r in history.ordered_results():
        if r.succeeded:
            assert r.last_epoch == EPOCHS and not has(store, stop_object(r.index))
    best = json.loads(store.get("best.json"))
    assert best["best"]["index"] not in {r.index for r in pruned}
    assert best["trials"]["pruned"] == len(pruned)
    assert store.get("plots/learning_curves.png").startswith(b"\x89PNG")
    assert f"{len(pruned)} stopped early" in store.get("report.html").decode()
    rows = store.get("history.csv").decode().splitlines()
    assert rows[0].startswith("index,status,epoch,")
    assert sum(",pruned," in row for row in rows) == len(pruned)


def test_no_rule_no_stops_and_full_curves(tmp_path: Path) -> None:
    _, store = run_study(tmp_path, "{rule: none}", {"default": {"epochs": EPOCHS, "epoch_s": 0.2}}, trials=4)
    _, history = read_study(store)
    assert [r.status for r in history.ordered_results()] == ["succeeded"] * 4
    assert all(sorted(history.epochs[i]) == list(range(1, EPOCHS + 1)) for i in range(4))
    assert not any(has(store, stop_object(i)) for i in range(4))


def test_a_trial_that_ignores_its_stop_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    fake = {"default": {"epochs": EPOCHS, "epoch_s": 0.6, "ignore_stop": True}}
    _, store = run_study(tmp_path, "{rule: asha, eta: 2, grace_period_s: 0}", fake)
    _, history = read_study(store)
    pruned = [r for r in history.ordered_results() if r.pruned]
    assert pruned
    for r in pruned:
        assert r.reason is not None and r.reason.endswith("(the trial killed without its own record)")
        assert json.loads(store.get(result_object(r.index)))["status"] == "pruned"
    assert history.failed == 0


def test_a_stop_racing_the_last_epoch_leaves_exactly_one_record(tmp_path: Path) -> None:
    # The median rule may judge a trial at its last epoch: the trial, already done,
    # records its success; a trial stopped earlier records its pruning. Either way
    # one record, and it agrees with the epoch the trial reached.
    fake = {"default": {"epochs": 2, "epoch_s": 0.3}}
    _, store = run_study(tmp_path, "{rule: median, min_trials: 1}", fake, trials=10)
    _, history = read_study(store)
    assert sorted(history.results) == list(range(10))
    for r in history.ordered_results():
        assert (r.status, r.last_epoch) in {("succeeded", 2), ("pruned", 1)}, r
