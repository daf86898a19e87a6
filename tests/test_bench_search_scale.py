"""The scale benchmark times both of the GP's turns, the costlier one with the prior's third fit."""

from __future__ import annotations

from bench import search_scale
from bench.search_problems import SYNTHETIC


def test_the_two_new_history_asks_are_the_trust_regions_turn_and_the_whole_spaces(
    prior_fits: list[tuple[str, ...]],
) -> None:
    spec, finished, pending = search_scale._history(SYNTHETIC["hartmann6"], 20)
    assert len(pending) == search_scale.IN_FLIGHT
    search_scale._new_history(spec, finished, pending)
    search_scale._new_history(spec, finished, pending[1:])
    assert prior_fits == [("long",), ("long", "whole")]  # the whole prior on the whole space's turn only


def test_the_table_has_a_row_per_space_and_size_with_both_turns() -> None:
    text = search_scale.scale_table({"hartmann6": SYNTHETIC["hartmann6"]}, (20, 30), 1)
    header, _, *rows = text.strip().splitlines()
    assert "trust region's turn" in header and "whole space's turn" in header
    assert [r.split("|")[1:3] for r in rows] == [[" hartmann6 ", " 20 "], [" hartmann6 ", " 30 "]]
