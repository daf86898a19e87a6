"""The confirmation phase: the top configurations re-trained on fresh seeds after the search.

The loop runs with the in-process launcher (its objective moves with the seed
by up to ±0.02, like the CNN's); the real CNN path is in
tests/e2e/test_local_study.py.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from kubetune import cli
from kubetune.contract import (
    BEST_OBJECT,
    HISTORY_OBJECT,
    MODEL_OBJECT,
    REPORT_OBJECT,
    LaunchRecord,
    TrialResult,
    model_object,
    params_object,
    result_object,
)
from kubetune.controller import confirmation, report, status
from kubetune.controller.best import best_document
from kubetune.controller.history import History, read_history
from kubetune.controller.leaderboard import best_of
from kubetune.controller.study import Study
from kubetune.kinds import CnnSettings
from kubetune.launcher import TrialExit
from kubetune.spec import Budget, Confirm, Spec, parse_spec
from kubetune.store import Store, open_store
from tests.gcs_emulator import FakeGCS
from tests.synthetic import InProcessLauncher

SPEC = parse_spec(
    """
    name: confirm
    optimizer: {n_initial_points: 4, random_state: 3}
    budget: {max_trials: 6, parallel: 2, max_failed: 3}
    confirm: {top_k: 2, seeds: 3}
    trial: {epochs: 1, seed: 5}
    """
)
SEARCH = SPEC.budget.max_trials
RUNS = SPEC.confirm.top_k * SPEC.confirm.seeds


def run(spec: Spec, store: Store, launcher: InProcessLauncher | None = None) -> InProcessLauncher:
    launcher = launcher or InProcessLauncher(store)
    Study(spec, store, launcher, poll_s=0.0).run()
    return launcher


def best_json(store: Store) -> dict[str, object]:
    return json.loads(store.get(BEST_OBJECT))  # type: ignore[no-any-return]


def test_the_top_k_are_trained_again_on_fresh_seeds_and_the_optimizer_never_hears(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    launcher = run(SPEC, store)
    history = read_history(store, SPEC)
    search = history.ordered_results()
    top2 = sorted(search, key=lambda r: -(r.objective_value or 0))[:2]

    runs = [req for req in launcher.launched if req.index >= SEARCH]
    assert [req.index for req in runs] == list(range(SEARCH, SEARCH + RUNS))
    # trial.seed is 5: the runs use 6, 7, 8, the same three for each configuration, and keep their model.
    assert Counter(req.settings.seed for req in runs) == {6: 2, 7: 2, 8: 2}
    assert [req.params for req in runs] == [top2[0].params] * 3 + [top2[1].params] * 3
    assert all(req.save_model for req in runs) and not any(r.save_model for r in launcher.launched[:SEARCH])
    records = history.confirmations()
    assert [(r.confirms, r.seed) for r in records.values()] == [
        (t.index, s) for t in top2 for s in (6, 7, 8)
    ]  # fmt: skip

    # The search is what it would have been without a confirmation phase.
    alone = open_store(str(tmp_path / "alone"))
    run(replace(SPEC, confirm=Confirm()), alone)
    assert [r.params for r in read_history(alone, SPEC).ordered_results()] == [r.params for r in search]
    assert len(store.get(HISTORY_OBJECT).decode().splitlines()) == 1 + SEARCH  # the search's rows only


def test_best_json_names_the_best_mean_with_its_spread_and_model(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    run(SPEC, store)
    doc = best_json(store)
    history = read_history(store, SPEC)
    confirmed = confirmation.review(SPEC, history)
    assert confirmed is not None and confirmed.complete and confirmed.winner is not None
    winner = confirmed.winner
    values = [history.results[i].objective_value or 0.0 for i in doc["best"]["confirmed"]["runs"]]  # type: ignore[index]
    best = doc["best"]
    assert isinstance(best, dict)
    assert best["index"] == winner.trial.index
    assert best["value"] == pytest.approx(sum(values) / 3)
    assert best["confirmed"]["n"] == 3
    assert best["confirmed"]["min"] == min(values) and best["confirmed"]["max"] == max(values)
    assert best["confirmed"]["sd"] > 0  # the seeds moved the objective
    assert best["metrics"]["test_accuracy"] == pytest.approx(best["value"] - 0.01)  # the runs' mean
    assert doc["search_best"]["index"] == best_of(SPEC, history.ordered_results()).index  # type: ignore[index, union-attr]
    section = doc["confirmation"]
    assert isinstance(section, dict)
    assert (section["finished"], section["total"], section["winner"]) == (RUNS, RUNS, winner.trial.index)
    assert all("test_accuracy" not in json.dumps(c) for c in section["configs"])  # the test set never chooses
    # The model of the winner's best run (by the objective), copied beside best.json.
    model = best["model"]
    assert model["object"] == MODEL_OBJECT
    assert model["run"] == max(
        best["confirmed"]["runs"], key=lambda i: history.results[i].objective_value or 0
    )
    assert store.get(MODEL_OBJECT) == store.get(model_object(model["run"]))


def test_without_confirmation_best_json_is_as_before(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    launcher = run(replace(SPEC, confirm=Confirm()), store)
    assert len(launcher.launched) == SEARCH
    doc = best_json(store)
    assert "confirmation" not in doc and "search_best" not in doc and "model" not in doc["best"]  # type: ignore[operator]
    assert MODEL_OBJECT not in store.list()


class Crashing(InProcessLauncher):
    """The controller dies (here: raises) once only hung trials are left running."""

    def wait(self, timeout: float) -> list[TrialExit]:
        exits = super().wait(timeout)
        if not exits and self.running() and self.running() <= self.hang:
            raise RuntimeError("controller killed")
        return exits


def test_a_restarted_controller_finishes_the_confirmation_without_repeating_a_run(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    hung = frozenset({SEARCH + 1, SEARCH + 3})
    with pytest.raises(RuntimeError, match="controller killed"):
        run(SPEC, store, Crashing(store, hang=hung))
    before = read_history(store, SPEC)
    assert set(before.unfinished) == hung and len(before.confirmations()) == 4

    resumed = run(SPEC, store)
    # The orphaned runs again under their own indices, with their seeds and models; then the two not begun.
    assert [req.index for req in resumed.launched] == [*sorted(hung), SEARCH + 4, SEARCH + 5]
    for req in resumed.launched[:2]:
        assert req.settings.seed == before.launched[req.index].seed and req.save_model
    after = read_history(store, SPEC)
    pairs = [(r.confirms, r.seed) for r in after.confirmations().values()]
    assert len(pairs) == RUNS and len(set(pairs)) == RUNS
    confirmed = confirmation.review(SPEC, after)
    assert confirmed is not None and confirmed.complete
    assert best_json(store)["best"]["index"] == confirmed.winner.trial.index  # type: ignore[index, union-attr]
    assert run(SPEC, store).launched == []  # complete: nothing more to launch


def test_a_failed_study_is_not_confirmed(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    launcher = run(SPEC, store, InProcessLauncher(store, fail=frozenset({0, 1, 2})))
    assert all(req.index < SEARCH for req in launcher.launched)
    assert "confirmation" not in best_json(store)


def test_a_spent_budget_ends_the_search_not_its_confirmation(tmp_path: Path) -> None:
    spec = replace(SPEC, budget=Budget(max_trials=6, parallel=1, max_gpu_hours=0.5))
    store = open_store(str(tmp_path))
    launcher = run(spec, store, InProcessLauncher(store, wall_s=600))  # 1/6 GPU hour each
    assert sum(not req.save_model for req in launcher.launched) == 3  # the budget stopped the search at 3
    doc = best_json(store)
    assert "budget.max_gpu_hours" in str(doc["ended_by"])
    assert doc["confirmation"]["finished"] == RUNS  # type: ignore[index]


def test_confirmation_may_be_asked_for_after_the_search(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    run(replace(SPEC, confirm=Confirm()), store)
    launcher = run(SPEC, store)  # the same study, now with confirm: a resumable change
    assert len(launcher.launched) == RUNS and all(req.index >= SEARCH for req in launcher.launched)
    assert best_json(store)["confirmation"]["finished"] == RUNS  # type: ignore[index]


def test_a_study_extended_after_its_confirmation_searches_as_if_there_had_been_none(tmp_path: Path) -> None:
    # One at a time: at parallel 2 the uninterrupted study asks with a trial still
    # running that the ended one has finished, and would differ for that alone.
    first = replace(SPEC, budget=replace(SPEC.budget, parallel=1))
    longer = replace(first, budget=replace(first.budget, max_trials=SEARCH + 2))
    store = open_store(str(tmp_path / "store"))
    run(first, store)
    launcher = run(longer, store)
    search = [req for req in launcher.launched if not req.save_model]
    assert [req.index for req in search] == [SEARCH + RUNS, SEARCH + RUNS + 1]  # after the runs
    alone = open_store(str(tmp_path / "alone"))
    run(replace(longer, confirm=Confirm()), alone)
    points = [r.params for r in read_history(alone, SPEC).ordered_results()]
    assert [r.params for r in read_history(store, SPEC).ordered_results()] == points
    # The top two are confirmed again from the new ranking: every one of them has its three runs.
    confirmed = confirmation.review(longer, read_history(store, SPEC))
    assert confirmed is not None and confirmed.complete and [c.n for c in confirmed.candidates] == [3, 3]


# --- the winner, from records --------------------------------------------------------


def result(index: int, value: float, test: float | None = None) -> TrialResult:
    metrics = {"val_accuracy": value, **({"test_accuracy": test} if test is not None else {})}
    return TrialResult(index=index, status="succeeded", params={"learning_rate": 0.001 * (index + 1)},
                       objective="val_accuracy", objective_value=value, metrics=metrics)  # fmt: skip


def history_of(search: list[float], runs: dict[int, list[tuple[float, float]]]) -> History:
    """Search trials 0.. with their values; then, per search trial, its runs' (val, test) values."""
    h = History()
    for i, v in enumerate(search):
        h.results[i] = result(i, v)
        h.launched[i] = LaunchRecord(i, h.results[i].params, 0.0, "test")
    index = len(search)
    for confirms, values in runs.items():
        for seed, (val, test) in enumerate(values, 1):
            h.launched[index] = LaunchRecord(index, h.results[confirms].params, 0.0, "test",
                                             confirms=confirms, seed=seed)  # fmt: skip
            h.results[index] = replace(result(index, val, test), params=h.results[confirms].params)
            index += 1
    return h


SMALL = replace(SPEC, trial=CnnSettings(epochs=1))  # seeds 1, 2, 3


def test_the_winner_is_the_best_mean_not_the_luckiest_search_trial() -> None:
    # Trial 0 led the search by its seed; over three fresh seeds trial 1 is better.
    h = history_of([0.90, 0.89, 0.70], {0: [(0.85, 0.84), (0.86, 0.85), (0.87, 0.86)],
                                       1: [(0.88, 0.87), (0.90, 0.89), (0.89, 0.91)]})  # fmt: skip
    confirmed = confirmation.review(SMALL, h)
    assert confirmed is not None and confirmed.winner is not None
    assert confirmed.winner.trial.index == 1
    doc = best_document(SMALL, h.ordered_results(), confirmed=confirmed)
    assert doc["search_best"]["index"] == 0
    best = doc["best"]
    assert best["index"] == 1 and best["value"] == pytest.approx(0.89)
    assert best["confirmed"] == {"n": 3, "mean": pytest.approx(0.89), "sd": pytest.approx(0.01),
                                 "min": 0.88, "max": 0.90, "runs": [6, 7, 8]}  # fmt: skip
    assert best["metrics"]["test_accuracy"] == pytest.approx(0.89)  # the winner's mean: the headline
    assert best["model"]["run"] == 7  # its best run by validation, not by test (run 8)


def test_until_every_run_finished_there_is_no_winner_and_the_search_best_stands() -> None:
    h = history_of([0.90, 0.89], {0: [(0.85, 0.84)], 1: [(0.95, 0.9), (0.95, 0.9), (0.95, 0.9)]})
    confirmed = confirmation.review(SMALL, h)
    assert confirmed is not None and confirmed.winner is None
    assert (confirmed.finished, confirmed.total) == (4, 6)
    assert [(r.confirms, r.seed) for r in confirmation.missing(SMALL, h)] == [(0, 2), (0, 3)]
    doc = best_document(SMALL, h.ordered_results(), confirmed=confirmed)
    assert doc["best"]["index"] == 0 and "search_best" not in doc
    assert doc["confirmation"]["winner"] is None


def test_a_repeated_configuration_is_confirmed_once() -> None:
    h = history_of([0.90, 0.89, 0.88], {})
    h.results[1] = replace(h.results[1], params=h.results[0].params)  # the same point, drawn twice
    assert [t.index for t in confirmation.top(SMALL, h.ordered_results())] == [0, 2]


def test_the_report_shows_the_confirmation_table_with_the_winners_test_accuracy_alone() -> None:
    h = history_of([0.90, 0.89, 0.70], {0: [(0.85, 0.84), (0.86, 0.85), (0.87, 0.86)],
                                       1: [(0.88, 0.87), (0.90, 0.89), (0.89, 0.91)]})  # fmt: skip
    confirmed = confirmation.review(SMALL, h)
    page = report.report_html(SMALL, h.ordered_results(), report.Figures(), confirmed=confirmed)
    table = page.split("<h2>Confirmation</h2>", 1)[1].split("<h2>", 1)[0]
    rows = table.split("<tbody>", 1)[1].split("</tr>")
    assert "<th>mean val_accuracy</th><th>sd</th><th>min</th><th>max</th>" in table
    winner = next(r for r in rows if 'id="winner"' in r)
    assert "<td>1</td>" in winner and "<td>3/3</td>" in winner and "<td>0.89</td>" in winner
    other = next(r for r in rows if "<td>0</td>" in r)
    assert other.endswith("<td>—</td>")  # no test accuracy but the winner's
    assert "Confirmation" not in report.report_html(replace(SMALL, confirm=Confirm()), h.ordered_results(),
                                                    report.Figures())  # fmt: skip


def test_status_shows_the_confirmation_progress(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    run(SPEC, store)
    snap = status.read(str(tmp_path))
    assert snap.ended
    text = status.render(snap, "table")
    line = next(line for line in text.splitlines() if line.startswith("CONFIRMATION"))
    assert f"{RUNS}/{RUNS} runs finished" in line and "(winner)" in line
    assert snap.document["trials"]["finished"] == SEARCH  # the runs are not trials of the search
    # While runs are missing, the study has not ended (a snapshot of its own: a snapshot caches its rows).
    history = read_history(store, SPEC)
    del history.results[max(history.results)]
    partial = status.Snapshot(snap.spec, history)
    assert not partial.ended
    assert "confirming" in status.render(partial, "table")


# --- kubetune best --model ----------------------------------------------------------


def test_best_fetches_the_chosen_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = open_store(str(tmp_path / "store"))
    run(SPEC, store)
    out = tmp_path / "out"
    assert cli.main(["best", str(tmp_path / "store"), "--model", str(out)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["model_path"] == str(out / MODEL_OBJECT)
    assert (out / MODEL_OBJECT).read_bytes() == store.get(model_object(doc["model"]["run"]))


def test_best_without_a_model_says_so_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = open_store(str(tmp_path / "store"))
    run(replace(SPEC, confirm=Confirm()), store)
    assert cli.main(["best", str(tmp_path / "store"), "--model", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "has no model" in err and "confirm.top_k" in err
    assert not (tmp_path / "out").exists()


PROGRAM = parse_spec(
    """
    name: prog
    objective: {metric: val_accuracy}
    space: [{name: learning_rate, type: real, low: 0.0001, high: 0.1, prior: log-uniform}]
    optimizer: {n_initial_points: 2, random_state: 1}
    budget: {max_trials: 3}
    confirm: {top_k: 1, seeds: 2}
    trial: {kind: program, command: "train --lr {learning_rate}"}
    """
)


def test_a_programs_runs_repeat_it_as_it_is_and_leave_no_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = open_store(str(tmp_path))
    launcher = run(PROGRAM, store)
    runs = launcher.launched[3:]
    assert len(runs) == 2 and not any(req.save_model for req in runs)
    assert [r.seed for r in read_history(store, PROGRAM).confirmations().values()] == [None, None]
    best = best_json(store)["best"]
    assert isinstance(best, dict) and best["confirmed"]["n"] == 2 and "model" not in best
    assert cli.main(["best", str(tmp_path), "--model", str(tmp_path / "out")]) == 1
    assert "has no model" in capsys.readouterr().err


def test_a_bad_confirm_section_is_refused_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("confirm: {top_k: 2, seeds: 0}\n")
    assert cli.main(["run", str(spec), "--store", str(tmp_path / "store")]) == 2
    assert capsys.readouterr().err == "kubetune: confirm.seeds: must be at least 1, got 0\n"
    assert not (tmp_path / "store").exists()


def test_best_fetches_the_model_from_a_bucket(
    gcs: FakeGCS, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    del gcs  # the fixture points the client at the emulator
    uri = f"gs://{bucket}/study"
    store = open_store(uri)
    run(SPEC, store)
    assert cli.main(["best", uri, "--model", str(tmp_path)]) == 0
    run_index = json.loads(capsys.readouterr().out)["model"]["run"]
    assert (tmp_path / MODEL_OBJECT).read_bytes() == store.get(model_object(run_index))
    assert store.get(params_object(run_index)) and store.get(result_object(run_index))
    assert REPORT_OBJECT in store.list()
