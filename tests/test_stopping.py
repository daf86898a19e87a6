"""The stopping rules' decisions on synthetic learning curves: which trial stops, at which epoch."""

from __future__ import annotations

import pytest

from kubetune.controller.stopping import AshaRule, Curves, MedianRule, NoStopping, stopping_rule
from kubetune.errors import SpecError
from kubetune.spec import parse_spec

GOOD = [0.70, 0.80, 0.85, 0.88]
OK = [0.60, 0.72, 0.80, 0.84]
BAD = [0.30, 0.35, 0.40, 0.42]


def curves(mine: list[float], running: dict[int, list[float]] | None = None,
           completed: dict[int, list[float]] | None = None, stopped: dict[int, list[float]] | None = None,
           ) -> Curves:  # fmt: skip
    return Curves(running={0: mine, **(running or {})}, completed=completed or {}, stopped=stopped or {})


# --- median -------------------------------------------------------------------------------


def test_median_stops_a_trial_below_the_completed_trials_running_averages() -> None:
    rule = MedianRule(grace_epochs=1, min_trials=3)
    done = {1: GOOD, 2: OK, 3: GOOD}
    reason = rule.should_stop(0, curves(BAD[:2], completed=done))
    assert reason is not None and "median rule" in reason and "3 completed" in reason
    assert rule.should_stop(0, curves(GOOD[:2], completed=done)) is None


def test_median_compares_its_best_so_far_not_its_last_value() -> None:
    # Running averages at epoch 2 of the completed: 0.75, 0.66, 0.75 -> median 0.75.
    rule = MedianRule(grace_epochs=1, min_trials=3)
    done = {1: GOOD, 2: OK, 3: GOOD}
    assert rule.should_stop(0, curves([0.76, 0.70], completed=done)) is None
    assert rule.should_stop(0, curves([0.74, 0.70], completed=done)) is not None


def test_median_waits_for_the_grace_epochs_and_for_enough_completed_trials() -> None:
    done = {1: GOOD, 2: OK, 3: GOOD}
    assert MedianRule(grace_epochs=3, min_trials=3).should_stop(0, curves(BAD[:2], completed=done)) is None
    assert (
        MedianRule(grace_epochs=3, min_trials=3).should_stop(0, curves(BAD[:3], completed=done)) is not None
    )
    assert MedianRule(grace_epochs=1, min_trials=4).should_stop(0, curves(BAD[:2], completed=done)) is None


def test_median_ignores_running_and_stopped_trials_and_too_short_curves() -> None:
    rule = MedianRule(grace_epochs=1, min_trials=2)
    # Only completed trials that reached the epoch count: here one, below min_trials.
    c = curves(BAD[:3], running={5: GOOD}, completed={1: GOOD, 2: GOOD[:2]}, stopped={3: GOOD})
    assert rule.should_stop(0, c) is None


# --- ASHA ---------------------------------------------------------------------------------


def test_asha_rungs_grow_by_eta_below_the_full_trial() -> None:
    assert AshaRule(min_epochs=1, eta=3, max_epochs=9).rungs() == [1, 3]
    assert AshaRule(min_epochs=1, eta=2, max_epochs=9).rungs() == [1, 2, 4, 8]
    assert AshaRule(min_epochs=2, eta=3, max_epochs=2).rungs() == []


def test_asha_keeps_the_top_one_in_eta_at_a_rung() -> None:
    rule = AshaRule(min_epochs=1, eta=3, max_epochs=9)
    others = {1: [0.8], 2: [0.7], 3: [0.6], 4: [0.5], 5: [0.4]}  # with the trial itself: 6 at rung 1, keep 2
    assert rule.should_stop(0, curves([0.9], completed=others)) is None
    assert rule.should_stop(0, curves([0.75], completed=others)) is None  # second of six
    reason = rule.should_stop(0, curves([0.65], completed=others))
    assert reason == "asha: 0.65 at rung 1 ranks 3 of 6; only the top 2 (1/3) go on"


def test_asha_never_waits_for_a_full_rung() -> None:
    # Asynchronous: the first to reach a rung goes on at once, whatever it scored;
    # each later arrival is judged against those that came before it.
    rule = AshaRule(min_epochs=1, eta=3, max_epochs=9)
    assert rule.should_stop(0, curves([0.1])) is None
    assert rule.should_stop(0, curves([0.95], running={1: [0.9]})) is None
    assert rule.should_stop(0, curves([0.1], running={1: [0.9]})) is not None


def test_asha_counts_running_completed_and_stopped_trials_that_reached_the_rung() -> None:
    rule = AshaRule(min_epochs=1, eta=2, max_epochs=4)
    c = curves([0.5], running={1: [0.9, 0.9]}, completed={2: [0.8, 0.85, 0.9, 0.9]}, stopped={3: [0.7]})
    assert rule.should_stop(0, c) == "asha: 0.5 at rung 1 ranks 4 of 4; only the top 2 (1/2) go on"


def test_asha_decides_once_at_each_rung_never_between() -> None:
    rule = AshaRule(min_epochs=1, eta=3, max_epochs=9)
    crowd = {i: [0.9, 0.9, 0.9] for i in range(1, 7)}
    # Epoch 2 is no rung: a trial promoted at rung 1 is not judged again until rung 3.
    assert rule.should_stop(0, curves([0.1, 0.2], completed=crowd)) is None
    assert rule.should_stop(0, curves([0.1, 0.2, 0.3], completed=crowd)) is not None


# --- from the spec ------------------------------------------------------------------------


def test_the_spec_names_the_rule() -> None:
    assert isinstance(stopping_rule(parse_spec("")), NoStopping)
    assert stopping_rule(parse_spec("stopping: {rule: median, grace_epochs: 2}")) == MedianRule(2, 3)
    spec = parse_spec("stopping: {rule: asha, eta: 2}\ntrial: {epochs: 9}")
    assert stopping_rule(spec) == AshaRule(min_epochs=1, eta=2, max_epochs=9)
    assert stopping_rule(parse_spec("stopping: {rule: asha, max_epochs: 27}")) == AshaRule(1, 3, 27)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("stopping: {rule: hyperband}", r"stopping\.rule: must be one of none, median, asha; got 'hyperband'"),
        ("stopping: {rule: asha, eta: 1}", r"stopping\.eta: must be at least 2, got 1"),
        ("stopping: {rule: median, grace_epochs: 0}", r"stopping\.grace_epochs: must be at least 1, got 0"),
        ("stopping: {rule: asha, max_epochs: 1}", r"stopping\.max_epochs: must be at least 2, got 1"),
        ("stopping: {grace_period: 5}", r"stopping\.grace_period: unknown field \(did you mean 'grace_period_s'\?\)"),
        ("stopping: {rule: asha}\nobjective: {metric: test_accuracy}",
         r"stopping\.rule: asha compares 'test_accuracy' after each epoch, but trials report it only at the end"),
    ],
)  # fmt: skip
def test_bad_stopping_settings_name_the_field(text: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_spec(text)
