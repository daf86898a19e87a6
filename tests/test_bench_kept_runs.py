"""Runs kept between benchmark runs (bench/kept_runs.py): reused only under the same stamp, on their shelf."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import search
from bench.kept_runs import KeptRuns, fingerprint, imported
from bench.search import random_run, run_cells
from bench.search_cnn import Evaluations, design


def rivals(method: str) -> bool:
    return method == "random"


def test_runs_come_back_only_under_their_stamp(tmp_path: Path) -> None:
    path = tmp_path / "kept.json"
    KeptRuns.load(path, "a", rivals).keep([(("branin", "random", 0, 30), [3.0, 1.0])])
    assert KeptRuns.load(path, "a", rivals).get(("branin", "random", 0, 30)) == [3.0, 1.0]
    assert KeptRuns.load(path, "a", rivals).get(("branin", "random", 1, 30)) is None
    assert KeptRuns.load(path, "b", rivals).runs == {}  # another stamp: the file starts afresh


def test_the_stamp_follows_code_files_and_their_absence(tmp_path: Path) -> None:
    problems = tmp_path / "problems.py"
    problems.write_text("A = 1\n")
    first = fingerprint([random_run], [problems])
    assert fingerprint([random_run], [problems]) == first
    problems.write_text("A = 2\n")
    assert fingerprint([random_run], [problems]) != first
    assert fingerprint([run_cells], [problems]) != fingerprint([random_run], [problems])
    problems.unlink()
    assert fingerprint([random_run], [problems]) != first


def test_comments_docstrings_and_line_breaks_keep_the_stamp_code_changes_it(tmp_path: Path) -> None:
    problems = tmp_path / "problems.py"
    problems.write_text('"""Problems."""\ndef f():\n    """Doc."""\n    return 1\n')
    first = fingerprint([random_run], [problems])
    reworded = '"""Reworded."""\n\n# why\ndef f():\n    """Other."""\n    return (\n        1\n    )\n'
    problems.write_text(reworded)
    assert fingerprint([random_run], [problems]) == first
    problems.write_text('"""Problems."""\ndef f():\n    """Doc."""\n    return 2\n')
    assert fingerprint([random_run], [problems]) != first
    problems.write_text('"""Problems."""\ndef f():\n    """Doc."""\n    "not a docstring"\n    return 1\n')
    assert fingerprint([random_run], [problems]) != first


def test_run_cells_reuses_kept_rival_runs_and_keeps_new_ones(tmp_path: Path) -> None:
    kept = KeptRuns.load(tmp_path / "kept.json", "stamp", rivals)
    planted = [123.0] * 8  # no real run of Branin gives this: a rerun would show
    kept.keep([(("branin", "random", 0, 8), planted)])
    out = run_cells(["branin"], ["random", "kubetune p1"], 2, 8, None, workers=1, kept=[kept])
    assert out["branin"]["random"][0] == planted
    assert kept.hits == 1  # what the section reports as not made again
    assert out["branin"]["random"][1] != planted and len(out["branin"]["random"][1]) == 12  # 1.5x budget
    again = KeptRuns.load(tmp_path / "kept.json", "stamp", rivals)
    assert again.get(("branin", "random", 1, 8)) == out["branin"]["random"][1]
    assert again.get(("branin", "kubetune p1", 0, 8)) is None  # not this shelf's method


def test_a_benchmark_that_dies_keeps_the_runs_it_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(search, "KEEP_EVERY", 1)
    kept = KeptRuns.load(tmp_path / "kept.json", "stamp", rivals)
    with pytest.raises(SystemExit, match="unknown option"):  # the third run fails, as a kill would end it
        run_cells(["branin"], ["random", "kubetune p1 nonsense"], 2, 8, None, workers=1, kept=[kept])
    again = KeptRuns.load(tmp_path / "kept.json", "stamp", rivals)
    assert [len(again.get(("branin", "random", s, 8)) or []) for s in (0, 1)] == [12, 12]


def test_a_change_to_kubetune_empties_its_shelf_not_the_rivals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(search, "REPO", tmp_path)
    monkeypatch.setattr(search, "KEPT", tmp_path / "kept")
    module = tmp_path / "kubetune" / "controller" / "search" / "gp.py"
    module.parent.mkdir(parents=True)
    module.write_text("EI = 1\n")
    before = [shelf.stamp for shelf in search.shelves()]
    module.write_text("EI = 2\n")
    after = [shelf.stamp for shelf in search.shelves()]
    assert before[0] == after[0]  # the rivals'
    assert before[1] != after[1]  # kubetune's
    assert [s.holds("optuna GP") for s in search.shelves()] == [True, False]
    assert [s.holds("kubetune p8 global") for s in search.shelves()] == [False, True]


def test_only_the_cnn_s_whole_design_cached_joins_the_stamps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "search-evaluations.json"
    monkeypatch.setattr(search, "KEPT", tmp_path / "kept")
    monkeypatch.setattr(search, "CACHE_FILE", cache)
    monkeypatch.setattr(search, "CONFIGS", 3)
    none = [shelf.stamp for shelf in search.shelves()]

    def cached(points: int) -> None:
        f = Evaluations(None, cache)
        cache.write_text(json.dumps({f.key(p, 0): 0.8 for p in design(3)[:points]}))

    cached(2)  # what section 13 collects: the design's first configurations
    assert search.collected() is None
    assert [shelf.stamp for shelf in search.shelves()] == none  # its kept runs all stand
    cached(3)
    assert search.collected() is not None
    assert all(a != b for a, b in zip(none, [shelf.stamp for shelf in search.shelves()], strict=True))


def test_imported_follows_every_import_of_the_package_and_no_other_module(tmp_path: Path) -> None:
    """A function's import counts, a submodule named by ``from package import`` too, each with its
    packages' __init__.py; a module nothing imports does not, nor one outside the package."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    for name, text in {
        "__init__.py": "",
        "a.py": "import os\n\ndef f():\n    from pkg.sub import b\n",
        "sub/__init__.py": "",
        "sub/b.py": "from pkg import c\n",
        "c.py": "",
        "unused.py": "",
    }.items():
        (pkg / name).write_text(text)
    root = tmp_path / "runner.py"
    root.write_text("import pkg.a\n")
    found = {p.relative_to(pkg).as_posix() for p in imported([root], pkg)}
    assert found == {"__init__.py", "a.py", "sub/__init__.py", "sub/b.py", "c.py"}


def test_kubetune_s_shelf_holds_the_search_and_not_the_cluster_code() -> None:
    """kubetune's runs are stamped with the modules they import: the search's, not the CLI's or the
    Kubernetes client's, whose changes no run can see."""
    repo = Path(search.__file__).parents[1]
    runners = [Path(search.__file__), repo / "tests" / "fake_trial.py"]
    found = {p.relative_to(repo / "kubetune").as_posix() for p in imported(runners, repo / "kubetune")}
    search_code = {"spec.py", "controller/optimizer.py", "controller/warping.py", "controller/gp.py"}
    assert search_code | {"controller/search/gp.py", "controller/search/region.py"} <= found
    assert not found & {"cli.py", "controller/study.py", "kubernetes/api.py", "launcher/__init__.py"}
