"""The trial records of one study, read back from its store.

This is the whole state of a study. The controller replays it on start; the
``best`` and ``status`` commands read it from a laptop.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from kubetune.contract import (
    MAX_RECORD_BYTES,
    SPEC_OBJECT,
    TRIALS_PREFIX,
    AdmissionRecord,
    AttemptRecord,
    EpochRecord,
    LaunchRecord,
    RecordError,
    StopRequest,
    TrialResult,
    epochs_prefix,
    failed_result,
    index_of,
    params_object,
    result_object,
    stop_object,
    trial_prefix,
)
from kubetune.errors import KubetuneError, SpecError
from kubetune.log import get_logger
from kubetune.spec import Spec, parse_spec
from kubetune.store import NotFound, Store, StoreError, Unreadable
from kubetune.typedjson import short

log = get_logger("kubetune.history")

Epochs = dict[int, dict[int, EpochRecord]]  # trial index -> epoch -> its record
Lost = dict[int, list[AttemptRecord]]  # trial index -> the attempts the infrastructure took
Admissions = dict[int, dict[int, AdmissionRecord]]  # trial index -> attempt -> when a queue admitted it


@dataclass
class History:
    launched: dict[int, LaunchRecord] = field(default_factory=dict)
    results: dict[int, TrialResult] = field(default_factory=dict)
    epochs: Epochs = field(default_factory=dict)
    stops: dict[int, StopRequest] = field(default_factory=dict)
    lost: Lost = field(default_factory=dict)
    admissions: Admissions = field(default_factory=dict)
    unreadable: dict[str, str] = field(default_factory=dict)  # object -> why it was passed over

    def attempt(self, index: int) -> int:
        """The attempt a trial is on: 0 until the infrastructure took one away."""
        return len(self.lost.get(index, []))

    def queued(self, index: int) -> bool:
        """Launched into a queue, unfinished, and its current attempt not admitted yet."""
        launch = self.launched.get(index)
        if launch is None or launch.queue is None or index in self.results:
            return False
        return self.attempt(index) not in self.admissions.get(index, {})

    def admitted_at(self, index: int, attempt: int, started_at: float) -> float | None:
        """When attempt ``attempt`` (launched at ``started_at``) began to hold its resources:
        at launch, or at its admission when launched into a queue; None if never admitted."""
        launch = self.launched[index]
        if launch.queue is None:
            return started_at
        admission = self.admissions.get(index, {}).get(attempt)
        return None if admission is None else max(started_at, admission.admitted_at)

    def queue_waits(self) -> list[float]:
        """Every admitted attempt's wait in the queue, in seconds."""
        return [a.wait_s for attempts in self.admissions.values() for a in attempts.values()]

    def trial_waits(self) -> dict[int, float]:
        """Each admitted trial's time in the queue, its attempts' waits summed, in seconds."""
        return {i: sum(a.wait_s for a in by_attempt.values()) for i, by_attempt in self.admissions.items()}

    def epoch_metrics(self, index: int) -> list[dict[str, float]]:
        """Each epoch's metrics, epoch 1 first, up to the first epoch not (yet) read."""
        out: list[dict[str, float]] = []
        for epoch, record in sorted(self.epochs.get(index, {}).items()):
            if epoch != len(out) + 1:
                break
            out.append(record.metrics)
        return out

    def curve(self, index: int, metric: str, sign: float = 1.0) -> list[float]:
        """``metric`` after each epoch, times ``sign``, up to the first epoch not (yet) read."""
        out: list[float] = []
        for epoch, record in sorted(self.epochs.get(index, {}).items()):
            if epoch != len(out) + 1 or metric not in record.metrics:
                break
            out.append(sign * record.metrics[metric])
        return out

    def add_epochs(
        self, store: Store, index: int, spec: Spec, names: list[str] | None = None
    ) -> list[EpochRecord]:
        """Read the epoch records of ``index`` not read yet (all of its, or those in ``names``); the new ones.

        One listing of the trial's own prefix and one read per new record: what
        following a running trial costs does not grow with the study. A record
        that cannot be read is a hole in the curve (History.curve stops at it:
        no stopping decision is made past it); the trial's result, not its
        epochs, decides how it ended.
        """
        have = self.epochs.setdefault(index, {})
        if names is None:
            names = store.list(epochs_prefix(index))
        new = []
        for name in names:
            epoch = _epoch_of(name)
            if epoch is None or epoch in have or name in self.unreadable:
                continue
            try:
                record = EpochRecord.from_json(store.get(name), spec.kind.bounds)
                if (record.index, record.epoch) != (index, epoch):
                    raise RecordError(f"epoch {record.epoch} of trial {record.index}, under trial {index}")
            except NotFound:
                continue
            except (RecordError, Unreadable) as exc:
                self.skip(store, name, exc)
                continue
            have[epoch] = record
            new.append(record)
        return sorted(new, key=lambda r: r.epoch)

    def skip(self, store: Store, name: str, why: Exception) -> None:
        """Note an object that cannot be read, once: it is as if it were not there."""
        self.unreadable[name] = str(why)
        log.warning("record_unreadable", object=f"{store.uri}/{name}", reason=str(why))

    def add_result(self, result: TrialResult) -> None:
        """A finished trial's result; its curve, when the record carries one, stands for its epochs."""
        self.results[result.index] = result
        curve = result.epoch_metrics
        if curve:
            at = result.finished_at or 0.0
            self.epochs[result.index] = {
                e: EpochRecord(result.index, e, metrics, at) for e, metrics in enumerate(curve, 1)
            }

    @property
    def unfinished(self) -> list[int]:
        """Launched, with no result yet: running, or orphaned by a dead controller."""
        return sorted(set(self.launched) - set(self.results))

    def confirming(self, index: int) -> bool:
        """Whether ``index`` is a confirmation run (``controller.confirmation``), not a search trial."""
        launch = self.launched.get(index)
        return launch is not None and launch.confirms is not None

    @property
    def searched(self) -> int:
        """Search trials handed out: what ``budget.max_trials`` counts."""
        return sum(not self.confirming(i) for i in self.launched)

    @property
    def failed(self) -> int:
        return sum(r.failed for r in self.ordered_results())

    @property
    def pruned(self) -> int:
        return sum(r.pruned for r in self.ordered_results())

    def next_index(self) -> int:
        return max(self.launched, default=-1) + 1

    def ordered_results(self) -> list[TrialResult]:
        """The search trials' results, in index order: what the optimizer, leaderboard and budget see."""
        return [self.results[i] for i in sorted(self.results) if not self.confirming(i)]

    def search_epochs(self) -> Epochs:
        """The search trials' epoch records: what learning curves and running rows show."""
        return {i: e for i, e in self.epochs.items() if not self.confirming(i)}

    def confirmations(self) -> dict[int, LaunchRecord]:
        """The confirmation runs handed out, by index."""
        return {i: launch for i, launch in sorted(self.launched.items()) if launch.confirms is not None}


def read_result(
    store: Store, index: int, launch: LaunchRecord, spec: Spec, attempt: int = 0
) -> TrialResult | None:
    """The trial's result, None if not written yet.

    A record that cannot be read or breaks the schema (NaN, out of range, not
    JSON, a folder in its place), or does not answer the launch it claims to
    (another index, other parameters, another objective, a later attempt),
    counts as a failed trial. It is write-once, so the reason lives only
    here, derived again identically on every replay.
    """
    try:
        data = store.get(result_object(index))
    except NotFound:
        return None
    except Unreadable as exc:
        return _failed(index, launch, spec, f"result record unreadable: {exc}")
    try:
        result = TrialResult.from_json(data, spec.kind.bounds)
    except RecordError as exc:
        return _failed(index, launch, spec, f"malformed result record: {exc}")
    problem = mismatch(result, index, launch, spec.objective.metric, attempt) or unmeasured(result, spec)
    return _failed(index, launch, spec, problem) if problem else measure(result, launch, spec)


def unmeasured(result: TrialResult, spec: Spec) -> str | None:
    """Why a succeeded ``result`` lacks a number the study weighs (an objective past the first, a
    constrained metric, the wall time a measured one is made of); None when it has them all."""
    if not result.succeeded:
        return None
    wall = result.wall_time_s
    if spec.measured and not (isinstance(wall, int | float) and math.isfinite(wall) and wall >= 0):
        return f"wall_time_s: must be a finite number of seconds, at least 0, got {short(repr(wall))}"
    needed = spec.weighed
    missing = [m for m in needed if m not in result.metrics and m not in spec.measured]
    return f"metrics.{missing[0]}: not reported, and the study weighs it" if missing else None


def measure(result: TrialResult, launch: LaunchRecord, spec: Spec) -> TrialResult:
    """``result`` with the metrics the controller measures (contract.MEASURED_METRICS) that the
    spec names: its wall time, and that times the GPUs its launch record says each attempt held.
    Only those named, so a study that names none reads its records as it always has."""
    if not spec.measured or result.wall_time_s is None:
        return result
    measured = {"wall_time_s": result.wall_time_s, "gpu_seconds": result.wall_time_s * launch.gpus}
    return replace(result, metrics={**result.metrics, **{m: measured[m] for m in sorted(spec.measured)}})


def mismatch(
    result: TrialResult, index: int, launch: LaunchRecord, objective: str, attempt: int
) -> str | None:
    """Why ``result``, found under trial ``index``, is not that trial's answer; None when it is.

    An earlier attempt's result is the trial's: the same point, trained once,
    written late (a node cut off, then back). A later one's cannot be.
    """
    if result.index != index:
        return f"result for trial {result.index} found under trial {index}"
    if result.objective != objective:
        return f"result for objective {short(result.objective, 40)!r}, the study's is {objective!r}"
    for name, value in launch.params.items():
        if name not in result.params:
            return f"result without parameter {name!r}, launched as {value!r}"
        if result.params[name] != value:
            got = short(repr(result.params[name]), 40)
            return f"result for {name}={got}, launched with {name}={value!r}"
    if result.attempt is not None and result.attempt > attempt:
        return f"result from attempt {result.attempt}, but trial {index} is on attempt {attempt}"
    return None


def _failed(index: int, launch: LaunchRecord, spec: Spec, reason: str) -> TrialResult:
    return failed_result(index, launch.params, spec.objective.metric, reason)


def read_history(store: Store, spec: Spec) -> History:
    """Every trial's records, read once: a finished trial's launch and result (its curve is in
    the result), an unfinished one's launch and epochs, and any lost attempts and stop request.

    An index with no launch record was never handed out by a controller:
    whatever is under it is passed over. A launch record that cannot be read
    stops the reader (KubetuneError): the controller wrote it, and without it
    the trial's parameters are unknown. The reads go out FETCHERS at a time:
    against a bucket, a restart of a 1,000-trial study waits on round trips,
    not on bytes (BENCHMARKS.md section 9).
    """
    history = History()
    by_index: dict[int, list[str]] = {}
    for name in store.list(TRIALS_PREFIX):
        i = index_of(name)
        if i is not None:
            by_index.setdefault(i, []).append(name)
    for i, objects in list(by_index.items()):
        if params_object(i) not in objects:
            history.skip(store, trial_prefix(i), RecordError("no launch record: never handed out"))
            del by_index[i]
    # A result is read even when not listed: a folder in its place is no object, but that trial's failure.
    wanted = [(params_object(i), result_object(i), *_extras(i, objects)) for i, objects in by_index.items()]
    records = _Prefetched(store, [name for names in wanted for name in names])
    for i, objects in sorted(by_index.items()):
        launch = read_launch(records, i)
        history.launched[i] = launch
        for name in sorted(n for n in objects if n.startswith(f"{trial_prefix(i)}attempts/")):
            _add_attempt(history, records, i, name)
        for name in sorted(n for n in objects if n.startswith(f"{trial_prefix(i)}admissions/")):
            _add_admission(history, records, i, name)
        if stop_object(i) in objects:
            _add_stop(history, records, i)
        result = read_result(records, i, launch, spec, history.attempt(i))
        if result is not None:
            history.add_result(result)
    # Running trials, and results from before 1.1, which carry no curve.
    uncurved = [i for i in by_index if i not in history.results or not history.results[i].epoch_metrics]
    curves = {i: [n for n in by_index[i] if n.startswith(epochs_prefix(i))] for i in uncurved}
    epochs = _Prefetched(store, [name for names in curves.values() for name in names])
    for i, names in curves.items():
        history.add_epochs(epochs, i, spec, names)
    return history


def _extras(index: int, objects: list[str]) -> list[str]:
    """A trial's stop request, attempt and admission records, where it has them."""
    folders = tuple(f"{trial_prefix(index)}{folder}/" for folder in ("attempts", "admissions"))
    return [n for n in objects if n == stop_object(index) or n.startswith(folders)]


# Reads in flight at once when a study is read back (the GCS client is thread-safe).
FETCHERS = 8


class _Prefetched:
    """``store``, with the objects ``names`` read ahead, FETCHERS at a time: each ``get`` of one
    returns what was read (or raises what reading it raised), once; anything else goes to ``store``."""

    def __init__(self, store: Store, names: list[str]) -> None:
        self.store = store
        with ThreadPoolExecutor(FETCHERS) as pool:
            self._read = dict(zip(names, pool.map(self._get, names), strict=True))

    def _get(self, name: str) -> bytes | StoreError:
        try:
            return self.store.get(name)
        except StoreError as exc:
            return exc

    @property
    def uri(self) -> str:
        return self.store.uri

    def get(self, name: str) -> bytes:
        found = self._read.pop(name, None)
        if found is None:
            return self.store.get(name)
        if isinstance(found, StoreError):
            raise found
        return found

    def list(self, prefix: str = "") -> list[str]:
        return self.store.list(prefix)

    def create(self, name: str, data: bytes) -> None:
        self.store.create(name, data)

    def put(self, name: str, data: bytes) -> None:
        self.store.put(name, data)


def read_launch(store: Store, index: int) -> LaunchRecord:
    """Trial ``index``'s launch record; KubetuneError naming it when it cannot be read."""
    name = params_object(index)
    try:
        launch = LaunchRecord.from_json(store.get(name))
    except (RecordError, Unreadable) as exc:
        raise KubetuneError(f"{store.uri}/{name}: unreadable launch record: {exc}") from None
    if launch.index != index:
        raise KubetuneError(f"{store.uri}/{name}: launch record of trial {launch.index}, under trial {index}")
    return launch


def _add_attempt(history: History, store: Store, index: int, name: str) -> None:
    try:
        record = AttemptRecord.from_json(store.get(name))
        if record.index != index:
            raise RecordError(f"attempt of trial {record.index}, under trial {index}")
    except (RecordError, Unreadable, NotFound) as exc:
        history.skip(store, name, exc)
        return
    history.lost.setdefault(index, []).append(record)


def _add_admission(history: History, store: Store, index: int, name: str) -> None:
    try:
        record = AdmissionRecord.from_json(store.get(name))
        if record.index != index:
            raise RecordError(f"admission of trial {record.index}, under trial {index}")
    except (RecordError, Unreadable, NotFound) as exc:  # as if never admitted: its GPU time goes uncounted
        history.skip(store, name, exc)
        return
    history.admissions.setdefault(index, {})[record.attempt] = record


def _add_stop(history: History, store: Store, index: int) -> None:
    try:
        request = StopRequest.from_json(store.get(stop_object(index)))
        if request.index != index:
            raise RecordError(f"stop request for trial {request.index}, under trial {index}")
    except (RecordError, Unreadable, NotFound) as exc:  # as if never asked
        history.skip(store, stop_object(index), exc)
        return
    history.stops[index] = request


def _epoch_of(name: str) -> int | None:
    stem = name.rsplit("/", 1)[-1].removesuffix(".json")
    return int(stem) if stem.isdigit() else None


def read_study(store: Store) -> tuple[Spec, History]:
    """The spec snapshot and history of the study in ``store``."""
    spec = read_spec(store)
    return spec, read_history(store, spec)


def read_spec(store: Store) -> Spec:
    """The study's spec snapshot; KubetuneError naming it when there is none or it cannot be read."""
    where = f"{store.uri}/{SPEC_OBJECT}"
    try:
        data = store.get(SPEC_OBJECT)
    except NotFound:
        raise KubetuneError(f"{store.uri}: no study here ({SPEC_OBJECT} not found)") from None
    except Unreadable as exc:
        raise KubetuneError(f"{where}: unreadable snapshot: {exc}") from None
    if len(data) > MAX_RECORD_BYTES:
        raise KubetuneError(f"{where}: unreadable snapshot: {len(data)} bytes, more than a spec holds")
    try:
        return parse_spec(data.decode(), source=where, strict=False)
    except UnicodeDecodeError:
        raise KubetuneError(f"{where}: unreadable snapshot: not UTF-8 text") from None
    except SpecError as exc:
        raise KubetuneError(f"{where}: unreadable snapshot: {exc}") from None
