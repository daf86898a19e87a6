"""The report views: plots and the HTML page, from a study's records alone.

The records come from the real GP loop with the synthetic trial (no training);
the page is rendered by headless Chromium (`make chromium` installs Debian's).
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image
from structlog.testing import capture_logs

from kubetune import cli
from kubetune.contract import (
    BEST_OBJECT,
    HISTORY_OBJECT,
    REPORT_OBJECT,
    Params,
    TrialResult,
    failed_result,
    plot_object,
)
from kubetune.controller import plots, publisher, report, views
from kubetune.controller.history import read_study
from kubetune.controller.search import gp
from kubetune.controller.study import Study
from kubetune.spec import parse_spec
from kubetune.store import Store, open_store
from tests import REPO
from tests.fake_trial import objective
from tests.synthetic import InProcessLauncher

KUBETUNE = REPO / ".venv" / "bin" / "kubetune"
CHROMIUM = Path("/usr/bin/chromium")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
X0: Params = {"learning_rate": 0.001, "num_dense_layers": 1, "num_dense_nodes": 12}

SPEC = parse_spec(
    """
    name: report-test
    optimizer: {n_initial_points: 4, random_state: 3}
    budget: {max_trials: 8, parallel: 1, max_failed: 3}
    """
)


@dataclass(frozen=True)
class Recorded:
    root: Path
    store: Store
    results: list[TrialResult]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    """Eight trials of the synthetic objective, trial 5 crashing: ~2 s."""
    root = tmp_path_factory.mktemp("store")
    store = open_store(str(root))
    study = Study(SPEC, store, InProcessLauncher(store, fail=frozenset({5}), epochs=3), poll_s=0.0)
    study.run()
    return Recorded(root, store, study.history.ordered_results())


@pytest.fixture(scope="module")
def page(recorded: Recorded, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`kubetune report` on a copy of the store without the published views."""
    root = tmp_path_factory.mktemp("copy") / "store"
    shutil.copytree(recorded.root, root)
    (root / REPORT_OBJECT).unlink()
    shutil.rmtree(root / "plots")
    out = tmp_path_factory.mktemp("page") / "page.html"
    done = kubetune("report", str(root), "--output", str(out))
    assert done.stdout.strip() == str(out.resolve())
    return out


def kubetune(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(KUBETUNE), *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done


# --- the plots -------------------------------------------------------------------


@pytest.mark.parametrize("name", report.PLOTS)
def test_each_plot_is_published_as_a_real_png(recorded: Recorded, name: str) -> None:
    data = recorded.store.get(plot_object(name))
    assert data.startswith(PNG_MAGIC)
    assert len(data) > 10_000
    assert_a_picture(Image.open(io.BytesIO(data)))


def assert_a_picture(image: Image.Image) -> None:
    width, height = image.size
    assert width > 300 and height > 300
    pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
    assert len(np.unique(pixels, axis=0)) > 10  # not a flat colour


def test_rendering_leaves_no_figure_open(recorded: Recorded) -> None:
    assert plt.get_fignums() == []  # after the study drew its plots in this process


def test_a_one_dimensional_space_gets_all_three_plots() -> None:
    spec = parse_spec(
        """
        space: [{name: learning_rate, type: real, low: 1.0e-5, high: 0.1, prior: log-uniform}]
        x0: [{learning_rate: 0.001}]
        """
    )
    rates = [1e-5, 1e-4, 1e-3, 3e-3, 1e-2, 1e-1]
    results = [succeeded(i, {"learning_rate": lr}) for i, lr in enumerate(rates)]
    figures = report.draw_figures(spec, results)
    # The three skopt plots; no learning curves without epoch records.
    assert figures.notes == {"learning_curves": "no trial has reported an epoch yet"}
    assert set(figures.images) == {"convergence", "objective", "evaluations"}
    for png in figures.images.values():
        assert_a_picture(Image.open(io.BytesIO(png)))


def test_the_objective_plots_model_is_fitted_like_the_optimizers_past_fit_max() -> None:
    spec = parse_spec("space: [{name: learning_rate, type: real, low: 1.0e-5, high: 0.1}]")
    rates = np.geomspace(1e-5, 0.1, gp.FIT_MAX + 50)
    results = [succeeded(i, {"learning_rate": float(lr)}) for i, lr in enumerate(rates)]
    model = plots.fit_model(spec, plots.optimize_result(spec, results))
    assert len(model.X_train_) == gp.FIT_MAX  # not all 250: a redraw must not stall the loop


def test_too_few_trials_leave_notes_instead_of_plots() -> None:
    none = report.draw_figures(SPEC, [failed_result(0, X0, "val_accuracy", "exited with code 1")])
    assert none.images == {} and set(none.notes) == set(report.PLOTS)
    one = report.draw_figures(SPEC, [succeeded(0, X0)])
    assert sorted(one.images) == ["convergence", "evaluations"]
    assert "at least 2" in one.notes["objective"]
    page = report.report_html(SPEC, [succeeded(0, X0)], one)
    assert "Objective plot: the model needs at least 2 successful trials." in page


def succeeded(index: int, params: Params) -> TrialResult:
    value = objective(params)
    return TrialResult(index, "succeeded", params, "val_accuracy", value, metrics={"val_accuracy": value})


# --- publishing --------------------------------------------------------------------


def test_a_failing_plot_costs_only_that_plot(
    recorded: Recorded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object) -> bytes:
        raise RuntimeError("no ink")

    monkeypatch.setattr(plots, "objective_png", broken)
    store = open_store(str(tmp_path))
    with capture_logs() as logs:
        views.publish(store, SPEC, recorded.results)
    assert {"event": "plot_failed", "plot": "objective"}.items() <= logs[0].items()
    assert store.list("plots/") == ["plots/convergence.png", "plots/evaluations.png"]
    page = store.get(REPORT_OBJECT).decode()
    assert "Objective plot: could not be drawn (RuntimeError: no ink)." in page


def test_a_failing_report_does_not_fail_publish(
    recorded: Recorded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object) -> report.Figures:
        raise MemoryError("matplotlib ran out")

    monkeypatch.setattr(report, "draw_figures", broken)
    store = open_store(str(tmp_path))
    with capture_logs() as logs:
        views.publish(store, SPEC, recorded.results)
    assert logs[0]["event"] == "report_failed" and logs[0]["log_level"] == "warning"
    assert store.list() == [BEST_OBJECT, HISTORY_OBJECT]


def test_instant_trials_leave_the_redraw_to_the_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: list[int] = []
    monkeypatch.setattr(views, "redraw", lambda *args, **_: drawn.append(len(args[2])))
    store = open_store(str(tmp_path))
    Study(SPEC, store, InProcessLauncher(store), poll_s=0.0).run()  # a trial always about to finish
    assert drawn == [SPEC.budget.max_trials]
    assert len(store.list("trials/")) == 2 * SPEC.budget.max_trials  # every record still written


def test_slow_trials_see_the_plots_redrawn_between_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn: list[int] = []
    monkeypatch.setattr(views, "redraw", lambda *args, **_: drawn.append(len(args[2])))
    monkeypatch.setattr(publisher, "redraw_due", lambda *_: True)  # as if each trial took minutes
    store = open_store(str(tmp_path))
    Study(SPEC, store, InProcessLauncher(store), poll_s=0.0).run()
    n = SPEC.budget.max_trials
    assert drawn[-1] == n and drawn[:-1] == sorted(set(drawn[:-1])) and len(drawn) > 2


def test_a_slow_redraw_holds_up_no_launch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first redraw blocks until every trial has finished: the loop must run them all meanwhile."""
    n = SPEC.budget.max_trials
    all_done, drawn = threading.Event(), []

    def slow_draw(*args: object, **_: object) -> None:
        drawn.append((all_done.wait(timeout=30), len(args[2])))  # type: ignore[arg-type]

    monkeypatch.setattr(views, "redraw", slow_draw)
    monkeypatch.setattr(publisher, "redraw_due", lambda *_: True)
    store = open_store(str(tmp_path))
    done = lambda s: all_done.set() if len(s.history.results) == n else None  # noqa: E731
    Study(SPEC, store, InProcessLauncher(store), poll_s=0.0, on_progress=done).run()
    assert drawn[0] == (True, 1)  # released by the study's end, not by the timeout: drawn from 1 result
    assert drawn[-1] == (True, n)  # and the final report comes after it, from them all


@pytest.mark.parametrize(
    ("stale_s", "draw_s", "next_exit_in_s", "due"),
    [
        (publisher.PLOTS_EVERY_S - 1, 1.0, None, False),  # drawn moments ago
        (publisher.PLOTS_EVERY_S, 1.0, None, True),  # nothing running, or no trial timed yet
        (publisher.PLOTS_EVERY_S, 1.0, 5.0, True),  # the next exit is further off than a redraw takes
        (publisher.PLOTS_EVERY_S, 1.0, 0.5, False),  # a trial finishes first: launch its successor first
        (publisher.PLOTS_EVERY_S, 1.0, -3.0, False),  # overdue: may finish any moment
        (publisher.PLOTS_MAX_STALE_S, 1.0, 0.5, True),  # but never staler than this
    ],
)
def test_a_redraw_waits_for_a_trial_about_to_finish(
    stale_s: float, draw_s: float, next_exit_in_s: float | None, due: bool
) -> None:
    assert publisher.redraw_due(stale_s, draw_s, next_exit_in_s) is due


# --- the page ------------------------------------------------------------------------


def test_the_report_is_published_self_contained(recorded: Recorded) -> None:
    page = recorded.store.get(REPORT_OBJECT).decode()
    assert "<title>kubetune study report-test</title>" in page
    assert page.count('<img src="data:image/png;base64,') == len(report.PLOTS)  # the learning curves too
    assert "http" not in page.replace('lang="en"', "")  # no external asset of any kind
    assert "exited with code 1" in page  # trial 5's failure, with its reason


def test_values_are_escaped() -> None:
    bad = failed_result(0, X0, "val_accuracy", "<script>alert(1)</script> & more \x1b[2J\x07")
    page = report.report_html(SPEC, [bad], report.Figures())
    assert "<script>" not in page and "\x1b" not in page and "\x07" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more [2J" in page


def test_a_study_whose_trials_waited_in_a_queue_reports_each_wait() -> None:
    results = [succeeded(0, X0), succeeded(1, X0)]
    page = report.report_html(SPEC, results, report.Figures(), waits={0: 30.0, 1: 90.0})
    assert "queue wait (s)" in page and "2 trials waited in the queue: median 60 s, longest 90 s." in page
    assert "queue wait" not in report.report_html(SPEC, results, report.Figures())


def test_every_value_on_the_page_goes_through_the_escape(monkeypatch: pytest.MonkeyPatch) -> None:
    # Whatever a record holds reaches the page through _e() alone: a value made to look like
    # markup shows up escaped wherever it is used, the summary's best index included.
    monkeypatch.setattr(report, "_e", lambda value: "" if value == "" else f"[{value}]")
    best = succeeded(7, X0)
    page = report.report_html(SPEC, [best], report.Figures())
    assert "(trial [7])" in page and "[1] of [" in page


def test_cli_report_rebuilds_the_page_from_the_records(recorded: Recorded, page: Path) -> None:
    html = page.read_text()
    assert html.count('<img src="data:image/png;base64,') == len(report.PLOTS)
    assert 'id="best"' in html


def test_cli_report_opens_the_page(
    recorded: Recorded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    opened: list[str] = []
    monkeypatch.setattr("webbrowser.open", opened.append)
    monkeypatch.setattr(report, "draw_figures", lambda *_: report.Figures())  # the page, not the plots
    monkeypatch.chdir(tmp_path)
    assert cli.main(["report", str(recorded.root), "--open"]) == 0
    written = tmp_path / "report-test-report.html"
    assert capsys.readouterr().out.strip() == str(written)
    assert opened == [written.as_uri()]


def test_cli_report_of_no_study_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run([str(KUBETUNE), "report", str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr == f"kubetune: {tmp_path}: no study here (study.yaml not found)\n"


def test_chromium_shows_the_best_trial_on_top(recorded: Recorded, page: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    chromium(f"--screenshot={shot}", page)
    assert_a_picture(Image.open(shot))
    assert shot.stat().st_size > 50_000  # text, tables and the plots, not a blank page
    best = json.loads(recorded.store.get(BEST_OBJECT))["best"]
    cells = BestRow.cells(chromium("--dump-dom", page))
    rank, index, value = cells[:3]
    assert (rank, index) == ("1", str(best["index"]))
    assert float(value) == pytest.approx(best["value"], rel=1e-5)


def chromium(action: str, page: Path) -> str:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make chromium` (Debian's chromium package)")
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [
                str(CHROMIUM),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                "--window-size=1280,2000",
                action,
                page.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


class BestRow(HTMLParser):
    """The text of each cell of the row with id="best"."""

    def __init__(self) -> None:
        super().__init__()
        self.inside = False
        self.texts: list[str] = []

    @classmethod
    def cells(cls, dom: str) -> list[str]:
        parser = cls()
        parser.feed(dom)
        assert parser.texts, 'no element with id="best"'
        return [t.strip() for t in parser.texts]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr" and ("id", "best") in attrs:
            self.inside = True
        elif tag == "td" and self.inside:
            self.texts.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr":
            self.inside = False

    def handle_data(self, data: str) -> None:
        if self.inside and self.texts:
            self.texts[-1] += data


# --- status ----------------------------------------------------------------------------


def test_status_agrees_with_the_store(recorded: Recorded) -> None:
    status = json.loads(kubetune("status", str(recorded.root)).stdout)
    spec, history = read_study(recorded.store)
    results = history.ordered_results()
    ok = [r for r in results if r.succeeded]
    assert status["trials"] == {
        "finished": 8,
        "succeeded": len(ok),
        "failed": 1,
        "pruned": 0,
        "total": spec.budget.max_trials,
        "running": 0,
        "queued": 0,
    }
    assert status["running"] == []
    top = max(ok, key=lambda r: r.objective_value or 0.0)
    assert (
        status["best"]["index"] == top.index == json.loads(recorded.store.get(BEST_OBJECT))["best"]["index"]
    )
