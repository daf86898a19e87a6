"""The ``kubetune`` command: run a study, run one trial, read results, prepare data.

Expected failures print one line, ``kubetune: <what>: <problem>``, and exit
non-zero (2 for bad input, 3 for a study stopped by failed trials, 143 when
stopped by SIGTERM); tracebacks are for bugs only. Heavy imports
(TensorFlow, scikit-optimize, kubernetes) happen inside the subcommand that
needs them, so ``kubetune best`` on a laptop needs neither.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, NoReturn

from kubetune import __version__
from kubetune.errors import KubetuneError, StudyFailed, UsageError

if TYPE_CHECKING:
    from kubetune.controller.status import StudyObject
    from kubetune.kubernetes import JobSettings
    from kubetune.spec import Spec
    from kubetune.store import Store

DESCRIPTION = (
    "Gaussian-process hyperparameter tuning, one trial per process or Kubernetes Job: "
    "run a study, run one trial, read results, prepare data."
)
# The shell's convention for "killed by SIGTERM"; the chart's podFailurePolicy
# ignores it, so a deleted or drained controller pod is replaced, not counted.
EXIT_TERMINATED = 128 + signal.SIGTERM
STUDY_PREFIX = "study/"  # kubetune status study/NAME: as kubectl names an object


class Terminated(BaseException):
    """SIGTERM arrived. A BaseException, like KeyboardInterrupt, so that no
    ``except Exception`` on the way up swallows it and every ``finally``
    (stop the trials, release the Lease) runs."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, not argparse's usage block: the user sees what is wrong.
        # main() prefixes "kubetune: ", so only the subcommand is named here.
        where = self.prog.removeprefix("kubetune").strip()
        raise UsageError(f"{where}: {message}" if where else message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="kubetune", description=DESCRIPTION)
    p.add_argument("--version", action="version", version=f"kubetune {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    run = sub.add_parser("run", help="run (or resume) a study")
    run.add_argument("spec", help="study spec (YAML)")
    run.add_argument("--store", required=True, help="a folder, or gs://bucket/prefix")
    run.add_argument("--launcher", choices=["local", "kubernetes"], default="local")
    run.add_argument("--log-dir", type=Path, help="local trial logs (default: STORE/logs or ./logs)")
    run.add_argument("--job-settings", type=Path, help="trial Job settings (YAML; --launcher kubernetes)")

    # Parsed by the trial side, by its kind (main() hands it over): listed here for the help alone.
    sub.add_parser(
        "trial", help="run one trial (what each Job runs): kubetune trial [KIND-SUBCOMMAND] OPTIONS"
    )

    best = sub.add_parser(
        "best",
        help="print the best trial's parameters and metrics as JSON (several objectives: the Pareto front)",
    )
    best.add_argument("store")
    best.add_argument("--pick", metavar="METRIC",
                      help="the Pareto front's member best on METRIC, one of the objectives")  # fmt: skip
    best.add_argument(
        "--model", type=Path, metavar="DIR",
        help="also fetch the chosen configuration's trained model into DIR (see confirm.top_k)",
    )  # fmt: skip

    status = sub.add_parser(
        "status", help="a summary and leaderboard: trials done, running, failed; the best"
    )
    status.add_argument(
        "store", help="a folder or gs://bucket/prefix; or study/NAME, the Study object in the cluster"
    )
    status.add_argument("-n", "--namespace", help="study/NAME's namespace (default: the kubeconfig's)")
    status.add_argument(
        "-o", "--output", choices=["table", "json"],
        help="default: a table on a terminal, JSON otherwise",
    )  # fmt: skip
    status.add_argument("-w", "--watch", action="store_true", help="refresh until the study ends")
    status.add_argument("--interval", type=_positive, default=2.0, help="seconds between refreshes (--watch)")

    rep = sub.add_parser("report", help="write the HTML report (leaderboard, plots) from the store")
    rep.add_argument("store")
    rep.add_argument("--output", type=Path, help="the page to write (default: ./STUDY-report.html)")
    rep.add_argument("--open", action="store_true", help="open it in a web browser")

    ds = sub.add_parser("dataset", help="Fashion-MNIST for trials, offline")
    dsub = ds.add_subparsers(dest="action", required=True, parser_class=_Parser)
    prep = dsub.add_parser("prepare", help="build the TFDS data dir from local files")
    prep.add_argument("--data-dir", type=Path)
    push = dsub.add_parser("push", help="upload the prepared data dir to a store")
    push.add_argument("store")
    push.add_argument("--data-dir", type=Path)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        # A container's first process (a trial's, the controller's) ignores
        # SIGTERM unless it handles it: evicted, it would run on to SIGKILL.
        with _sigterm_raises():
            if args[:1] == ["trial"]:
                # A trial's options are its kind's (the subcommand after `trial` names it): the
                # trial side parses them.
                from kubetune import trial

                return trial.main(args[1:])
            ns = _parser().parse_args(args)
            return _dispatch(ns, args)
    except KubetuneError as exc:
        print(f"kubetune: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("kubetune: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("kubetune: stopped by SIGTERM", file=sys.stderr)
        return EXIT_TERMINATED


def _dispatch(ns: argparse.Namespace, argv: list[str]) -> int:
    if ns.command == "run":
        return _run(ns)
    if ns.command == "best":
        return _best(ns.store, ns.model, ns.pick)
    if ns.command == "status":
        return _status(ns)
    if ns.command == "report":
        return _report(ns.store, ns.output, ns.open)
    return _dataset(ns)


def _run(ns: argparse.Namespace) -> int:
    from kubetune.spec import load_spec
    from kubetune.store import open_store

    # Every input is checked before anything is created: the store folder,
    # the Lease, a Job.
    spec = load_spec(ns.spec)
    job_settings = _job_settings(ns)
    store = open_store(ns.store)
    if ns.launcher != "kubernetes":
        return _run_study(ns, spec, store, job_settings)
    from kubetune.kubernetes import Lease, api_client, own_namespace

    lease = Lease(api_client(), own_namespace(), f"kubetune-{spec.name}")
    try:
        lease.acquire()
        lease.keep_renewing()
        return _run_study(ns, spec, store, job_settings)
    finally:
        # Also on SIGTERM: a replacement controller takes over at once
        # instead of waiting for the Lease to expire.
        lease.release()


def _job_settings(ns: argparse.Namespace) -> JobSettings | None:
    if ns.launcher != "kubernetes" or ns.job_settings is None:
        return None
    from kubetune.kubernetes import JobSettings

    return JobSettings.load(ns.job_settings)


# Whether SIGTERM arrived: raised where it lands, it may be lost there (a finalizer or a
# library's bare ``except`` swallows it) while the handler that raised it is gone.
_terminated = False


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM (pod deletion, node drain, ``kill``) into Terminated while inside."""
    global _terminated
    _terminated = False

    def handler(signum: int, frame: FrameType | None) -> None:
        del frame
        global _terminated
        _terminated = True
        # A second SIGTERM kills at once, should the clean-up itself hang.
        signal.signal(signum, signal.SIG_DFL)
        raise Terminated

    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may handle signals (kubetune called from a thread)
        return
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_if_terminated(study: object) -> None:
    """Raise a SIGTERM lost where it landed at the loop's next turn, within a second. A study
    that ran on, its handler gone, ignored its pod's deletion until SIGKILL; locally it ran to
    its end, then hung joining a plot thread that waited for a lock the lost exception had left
    held (logging's)."""
    del study
    if _terminated:
        raise Terminated


def _run_study(ns: argparse.Namespace, spec: Spec, store: Store, job_settings: JobSettings | None) -> int:
    from kubetune.controller.best import front_member
    from kubetune.controller.leaderboard import front
    from kubetune.controller.observer import StudyObserver, Unobserved
    from kubetune.controller.progress import Progress
    from kubetune.controller.study import Study
    from kubetune.launcher import Launcher, LocalLauncher

    launcher: Launcher
    observer: StudyObserver
    progress = Progress()
    hooks: list[Callable[[Study], None]] = [_raise_if_terminated, progress]  # each turn of the loop
    resource = None
    if ns.launcher == "kubernetes":
        from kubetune.kubernetes import JobSettings, connect, study_resource

        params = {*spec.full_params({}), *(d.name for d in spec.space)}
        weighed = spec.weighed
        launcher, observer = connect(spec.name, job_settings or JobSettings(), params, weighed)
        resource = study_resource(store.uri, observer)
        if resource is not None:  # its budget and confirm are the user's latest word (kubectl patch)
            spec = resource.amended(spec)
            hooks.append(resource)
    else:
        log_dir = ns.log_dir or (Path(store.uri) / "logs" if "://" not in store.uri else Path("logs"))
        launcher, observer = LocalLauncher(log_dir), Unobserved()

    def on_progress(study: Study) -> None:
        for hook in hooks:
            hook(study)

    study = Study(spec, store, launcher, observer=observer, on_progress=on_progress)
    try:
        outcome = study.run()
        if resource is not None:
            resource.ended(study)
    finally:
        progress.close()
        launcher.close()
    best = outcome.summary.best
    winner = outcome.confirmed.winner if outcome.confirmed else None
    if spec.multi:
        # No one best: the trade-offs found, as best.json's front (kubetune best --pick chooses).
        members = front(spec, study.history.ordered_results())
        print(json.dumps({"front": [front_member(spec, r) for r in members]}))
    elif winner is not None:
        # The configuration with the best mean over fresh seeds: its spread says how far to trust it.
        means = winner.mean_metrics()
        spread = {"n": winner.n, "sd": winner.sd, **{m: means.get(m) for m in spec.kind.held_out}}
        print(json.dumps({"index": winner.trial.index, spec.objective.metric: winner.mean,
                          "params": spec.full_params(winner.trial.params), **spread}))  # fmt: skip
    elif best is not None:
        print(
            json.dumps(
                {
                    "index": best.index,
                    spec.objective.metric: best.objective_value,
                    "params": spec.full_params(best.params),
                }
            )
        )
    if not outcome.completed:
        raise StudyFailed(
            f"study {spec.name!r} failed: {outcome.summary.failed} trials failed "
            f"(budget.max_failed is {spec.budget.max_failed})"
        )
    return 0


def _best(uri: str, model_dir: Path | None, metric: str | None) -> int:
    from kubetune.controller import confirmation
    from kubetune.controller.best import best_document, pick
    from kubetune.controller.history import read_study
    from kubetune.store import open_store

    store = open_store(uri, create=False)
    spec, history = read_study(store)
    confirmed = confirmation.review(spec, history)
    doc = best_document(spec, history.ordered_results(), confirmed=confirmed)
    if doc["best"] is None:
        feasible = " feasible" if spec.constraints else ""
        raise KubetuneError(f"{uri}: no{feasible} trial has finished successfully yet")
    if metric is not None:
        print(json.dumps(pick(spec, history.ordered_results(), metric), indent=2))
        return 0
    if "front" in doc and model_dir is None:
        print(json.dumps(doc["front"], indent=2))
        return 0
    if model_dir is not None:
        # Before printing: a failed fetch prints nothing but its one line.
        path = confirmation.fetch_model(store, confirmed, model_dir)
        doc["best"]["model_path"] = str(path)
    print(json.dumps(doc["best"], indent=2))
    return 0


def _status(ns: argparse.Namespace) -> int:
    from kubetune.controller import status

    output = ns.output or ("table" if sys.stdout.isatty() else "json")
    read: Callable[[], status.View]
    if ns.store.startswith(STUDY_PREFIX):
        read = _study_object(ns.store.removeprefix(STUDY_PREFIX), ns.namespace)
    elif ns.namespace is not None:
        raise UsageError("status: --namespace is for a Study object (study/NAME), not a store")
    else:
        read = functools.partial(status.read, ns.store)
    if not ns.watch:
        print(status.render(read(), output))
        return 0
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends watching, as with kubectl -w
        status.watch(read, output, ns.interval, sys.stdout, clear=output == "table" and sys.stdout.isatty())
    return 0


def _study_object(name: str, namespace: str | None) -> Callable[[], StudyObject]:
    """A reader of the Study ``name``'s object, through the kubeconfig (or a pod's credentials)."""
    from kubetune.controller.status import StudyObject
    from kubetune.kubernetes import api_client, read_study

    api = api_client()
    return lambda: StudyObject(read_study(api, name, namespace))


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def _report(uri: str, output: Path | None, open_it: bool) -> int:
    import webbrowser

    from kubetune.controller import confirmation, report, status
    from kubetune.controller.history import read_study
    from kubetune.store import open_store

    # Rebuilt from the records, not copied from the store's report.html: it may lag or be missing.
    store = open_store(uri, create=False)
    spec, history = read_study(store)
    results, epochs = history.ordered_results(), history.search_epochs()
    figures = report.draw_figures(spec, results, epochs)
    page = report.report_html(spec, results, figures, history.lost, confirmation.review(spec, history),
                              status.warm_start(store), epochs, history.trial_waits())  # fmt: skip
    path = (output or Path(f"{spec.name}-report.html")).resolve()
    try:
        path.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise KubetuneError(f"{path}: cannot write the report: {exc.strerror}") from None
    print(path)
    if open_it:
        webbrowser.open(path.as_uri())
    return 0


def _dataset(ns: argparse.Namespace) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow's first import
    from kubetune.trial import dataset

    data_dir = ns.data_dir or dataset.data_dir()
    if ns.action == "prepare":
        print(dataset.prepare(data_dir))
        return 0
    from kubetune.store import open_store

    count = dataset.push(open_store(ns.store), data_dir)
    print(f"uploaded {count} files to {ns.store}")
    return 0
