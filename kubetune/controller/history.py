"""The trial records of one study, read back from its store.

This is the whole state of a study. The controller replays it on start; the
``best`` and ``status`` commands read it from a laptop.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from kubetune.contract import (
    SPEC_OBJECT,
    TRIALS_PREFIX,
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
from kubetune.spec import Spec, parse_spec
from kubetune.store import NotFound, Store

Epochs = dict[int, dict[int, EpochRecord]]  # trial index -> epoch -> its record
Lost = dict[int, list[AttemptRecord]]  # trial index -> the attempts the infrastructure took


@dataclass
class History:
    launched: dict[int, LaunchRecord] = field(default_factory=dict)
    results: dict[int, TrialResult] = field(default_factory=dict)
    epochs: Epochs = field(default_factory=dict)
    stops: dict[int, StopRequest] = field(default_factory=dict)
    lost: Lost = field(default_factory=dict)

    def attempt(self, index: int) -> int:
        """The attempt a trial is on: 0 until the infrastructure took one away."""
        return len(self.lost.get(index, []))

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
        following a running trial costs does not grow with the study.
        """
        have = self.epochs.setdefault(index, {})
        if names is None:
            names = store.list(epochs_prefix(index))
        new = []
        for name in names:
            epoch = _epoch_of(name)
            if epoch is None or epoch in have:
                continue
            try:
                record = EpochRecord.from_json(store.get(name), spec.kind.bounds)
            except (RecordError, NotFound):
                continue  # a curve with a hole stops at it (History.curve): nothing to decide on
            have[epoch] = record
            new.append(record)
        return sorted(new, key=lambda r: r.epoch)

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


def read_result(store: Store, index: int, launch: LaunchRecord | None, spec: Spec) -> TrialResult | None:
    """The trial's result, None if not written yet.

    A record that breaks the schema (NaN, out of range, not JSON) counts as a
    failed trial: it is write-once, so the reason lives only here, derived
    again identically on every replay.
    """
    try:
        data = store.get(result_object(index))
    except NotFound:
        return None
    try:
        return TrialResult.from_json(data, spec.kind.bounds)
    except RecordError as exc:
        params = launch.params if launch else {}
        return failed_result(index, params, spec.objective.metric, f"malformed result record: {exc}")


def read_history(store: Store, spec: Spec) -> History:
    history = History()
    names = store.list(TRIALS_PREFIX)
    indices = sorted({i for i in map(index_of, names) if i is not None})
    present = set(names)
    for i in indices:
        launch = None
        if params_object(i) in present:
            try:
                launch = LaunchRecord.from_json(store.get(params_object(i)))
            except RecordError:
                launch = None
        if launch is not None:
            history.launched[i] = launch
        if result_object(i) in present:
            result = read_result(store, i, launch, spec)
            if result is not None:
                history.results[i] = result
        history.add_epochs(store, i, spec, [n for n in names if n.startswith(epochs_prefix(i))])
        for name in sorted(n for n in names if n.startswith(f"{trial_prefix(i)}attempts/")):
            with contextlib.suppress(RecordError, NotFound):
                history.lost.setdefault(i, []).append(AttemptRecord.from_json(store.get(name)))
        if stop_object(i) in present:
            with contextlib.suppress(RecordError, NotFound):  # unreadable: as if never asked
                history.stops[i] = StopRequest.from_json(store.get(stop_object(i)))
    return history


def _epoch_of(name: str) -> int | None:
    stem = name.rsplit("/", 1)[-1].removesuffix(".json")
    return int(stem) if stem.isdigit() else None


def read_study(store: Store) -> tuple[Spec, History]:
    """The spec snapshot and history of the study in ``store``."""
    try:
        text = store.get(SPEC_OBJECT).decode()
    except NotFound:
        raise KubetuneError(f"{store.uri}: no study here ({SPEC_OBJECT} not found)") from None
    try:
        spec = parse_spec(text, source=f"{store.uri}/{SPEC_OBJECT}")
    except SpecError as exc:
        raise KubetuneError(f"{store.uri}/{SPEC_OBJECT}: unreadable snapshot: {exc}") from None
    return spec, read_history(store, spec)
