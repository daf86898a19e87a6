"""The contract between the controller and a trial, whatever the trial trains.

Both sides agree on three things, defined here: the object names in the store,
the JSON schema of the records, and the shape of a trial's command line (the
generic options; a trial kind, ``kubetune.kinds``, adds its own settings).
What a kind reports and how it trains belong to the kind. This module imports
nothing heavy, so both images can use it.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal, NoReturn, Protocol, Self

from kubetune import typedjson
from kubetune.errors import UsageError
from kubetune.settings import add_arguments, from_args, to_argv
from kubetune.typedjson import short

ParamValue = float | int | str
Params = dict[str, ParamValue]
Goal = Literal["maximize", "minimize"]
Status = Literal["succeeded", "failed", "pruned"]
STATUSES: tuple[Status, ...] = ("succeeded", "failed", "pruned")
# Metrics the controller measures for every trial, whatever its kind (an objective or constraint
# may name them): its wall time, and that times the GPUs it held (its launch record's).
MEASURED_METRICS: dict[str, Goal] = {"wall_time_s": "minimize", "gpu_seconds": "minimize"}

# Exit codes of `kubetune trial`.
EXIT_OK = 0
EXIT_TRIAL_FAILED = 3  # the trial ran and recorded a failure (e.g. NaN loss)
EXIT_ALREADY_RECORDED = 4  # another run of this trial index wrote first

# --- object names -------------------------------------------------------------

SPEC_OBJECT = "study.yaml"
BEST_OBJECT = "best.json"
HISTORY_OBJECT = "history.csv"
REPORT_OBJECT = "report.html"
# What an optimizer.warm_start told the study before its first point (controller.warmstart).
WARM_START_OBJECT = "warm_start.json"
# The chosen configuration's trained model (Keras format), copied beside best.json.
MODEL_OBJECT = "model.keras"
PLOTS_PREFIX = "plots/"
DATASET_PREFIX = "dataset/"
TRIALS_PREFIX = "trials/"


def plot_object(name: str) -> str:
    return f"{PLOTS_PREFIX}{name}.png"


def trial_prefix(index: int) -> str:
    # Zero-padded so a plain listing of the bucket sorts trials by index.
    return f"{TRIALS_PREFIX}{index:06d}/"


def params_object(index: int) -> str:
    """Written by the controller before launching: the launch record."""
    return trial_prefix(index) + "params.json"


def result_object(index: int) -> str:
    """Written once, by the trial or (on its behalf) by the controller."""
    return trial_prefix(index) + "result.json"


def epochs_prefix(index: int) -> str:
    return trial_prefix(index) + "epochs/"


def epoch_object(index: int, epoch: int) -> str:
    """Written once by the trial after each epoch (1-based): its intermediate metrics."""
    return f"{epochs_prefix(index)}{epoch:04d}.json"


def attempt_object(index: int, attempt: int) -> str:
    """Written once by the controller when attempt ``attempt`` of a trial was lost to the infrastructure."""
    return f"{trial_prefix(index)}attempts/{attempt:02d}.json"


def admission_object(index: int, attempt: int) -> str:
    """Written once by the controller when attempt ``attempt``, launched into a queue, was admitted."""
    return f"{trial_prefix(index)}admissions/{attempt:02d}.json"


def stop_object(index: int) -> str:
    """Written once by the controller: the trial is to stop (a stopping rule pruned it)."""
    return trial_prefix(index) + "stop.json"


def model_object(index: int) -> str:
    """Written by a trial asked to save its model (``--save-model``), before its result."""
    return trial_prefix(index) + MODEL_OBJECT


def index_of(name: str) -> int | None:
    """The trial index in an object name under ``trials/``, else None."""
    if not name.startswith(TRIALS_PREFIX):
        return None
    head = name[len(TRIALS_PREFIX) :].split("/", 1)[0]
    return int(head) if head.isdigit() else None


# --- the trial's command line -----------------------------------------------


@dataclass(frozen=True)
class TrialRequest:
    """Everything a trial needs; rendered as its command line.

    ``settings`` is the trial kind's settings dataclass (the same for every
    trial of a study); its fields become options after the generic ones.
    """

    store: str
    study: str
    index: int
    params: Params
    settings: Any
    objective: str
    attempt: int = 0  # launches of this index before, lost to the infrastructure (not on the command line)
    save_model: bool = False  # upload the trained model (model_object); a kind that has none ignores it


def trial_command(req: TrialRequest, subcommand: Sequence[str] = ()) -> list[str]:
    """The exact argv a trial runs with, locally and in a Kubernetes Job; ``subcommand``: its
    kind's (``kubetune trial exec`` for a program)."""
    generic = ["--store", req.store, "--study", req.study, "--index", str(req.index),
               "--objective", req.objective, "--params", json.dumps(req.params, sort_keys=True)]  # fmt: skip
    if req.save_model:
        generic.append("--save-model")
    return ["kubetune", "trial", *subcommand, *generic, *to_argv(req.settings)]


def parse_trial_args(argv: Sequence[str], kind: TrialKindInfo) -> TrialRequest:
    """Parse a trial command line (without the leading ``kubetune trial``)."""
    parser = _TrialParser(prog="kubetune trial")
    add_trial_arguments(parser, kind)
    ns = parser.parse_args(list(argv))
    return TrialRequest(
        store=ns.store,
        study=ns.study,
        index=ns.index,
        params=ns.params,
        settings=from_args(ns, kind.settings_type),
        objective=ns.objective,
        save_model=ns.save_model,
    )


class _TrialParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"trial: {message}")  # one line, not argparse's usage block


def add_trial_arguments(parser: argparse.ArgumentParser, kind: TrialKindInfo) -> None:
    """The generic options, then one per field of the kind's settings."""
    parser.add_argument("--store", required=True, help="store URI: a folder or gs://bucket/prefix")
    parser.add_argument("--study", required=True)
    parser.add_argument("--index", required=True, type=int)
    # A kind that declares no metrics (a program) may report any.
    parser.add_argument("--objective", required=True, choices=sorted(kind.metrics) or None)
    parser.add_argument("--params", required=True, type=_params_arg, help="JSON object")
    parser.add_argument("--save-model", action="store_true", help="upload the trained model to the store")
    add_arguments(parser, kind.settings_type)


class TrialKindInfo(Protocol):
    """What the contract needs of a trial kind (``kubetune.kinds``) to speak its command line."""

    @property
    def settings_type(self) -> type: ...

    @property
    def metrics(self) -> Mapping[str, Goal]: ...


def _params_arg(text: str) -> Params:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON ({exc})") from None
    if not isinstance(value, dict) or not all(_is_param(v) for v in value.values()):
        raise argparse.ArgumentTypeError("must be a JSON object of finite numbers and strings")
    return value


def _is_param(v: object) -> bool:
    if isinstance(v, float):
        return math.isfinite(v)
    return isinstance(v, (int, str)) and not isinstance(v, bool)


# --- records ------------------------------------------------------------------
#
# Every record carries ``schema``, "MAJOR.MINOR". A minor version only adds
# optional fields: a reader of the same major ignores the fields it does not
# know (and keeps them, should it write the record again), and gives the
# fields it knows and a record lacks their defaults. A newer major is refused,
# naming both versions. Versions so far:
#   1.0  the first records (``schema`` was the integer 1)
#   1.1  results carry ``attempt`` and ``epoch_metrics`` (their learning curve); what a kind
#        reports beyond the shared fields is in ``metrics`` (1.0 results held the CNN's
#        ``images_per_s`` and ``param_count`` at the top level: read into metrics)
#   1.2  launch records carry ``queue`` (the Kueue queue trial Jobs wait in); admission
#        records (``admissions/AA.json``) say when each queued attempt was admitted
#   1.3  best.json carries ``schema``, ``objectives``, ``constraints`` and ``front`` (the Pareto
#        front of the feasible trials, each with its params and metrics); ``objective`` and
#        ``best`` stay, the first objective's. A study that names measured metrics
#        (MEASURED_METRICS) finds them in its results' ``metrics``, put there by the controller

SCHEMA_MAJOR = 1
SCHEMA_MINOR = 3
SCHEMA_VERSION = f"{SCHEMA_MAJOR}.{SCHEMA_MINOR}"
# Bigger than any record kubetune writes (a failure reason is capped at
# REASON_MAX): parsing what a trial left costs bounded time and memory.
MAX_RECORD_BYTES = 2**20
REASON_MAX = 4096
# The attempt a trial runs as reaches it by environment, not by its command
# line: a trial image one minor version older ignores it instead of refusing
# an unknown option.
ATTEMPT_ENV = "KUBETUNE_TRIAL_ATTEMPT"


class RecordError(ValueError):
    """A record in the store does not follow the schema."""


class NewerRecord(RecordError):
    """A record written under a newer major version of the schema than this kubetune reads."""


def cap_reason(reason: str) -> str:
    """``reason`` within REASON_MAX characters, saying how much was cut."""
    if len(reason) <= REASON_MAX:
        return reason
    cut = f" [... {len(reason) - REASON_MAX + 40} characters cut]"
    return reason[: REASON_MAX - len(cut)] + cut


def schema_of(value: Any) -> tuple[int, int]:
    """(major, minor) of a record's ``schema`` field; 1.0 when absent (or the integer 1)."""
    if value is None:
        return 1, 0
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 1000:
        return value, 0
    if isinstance(value, str) and re.fullmatch(r"\d{1,3}\.\d{1,3}", value):
        major, minor = value.split(".")
        return int(major), int(minor)
    raise typedjson.Invalid(f'schema: must be "MAJOR.MINOR", got {typedjson.short(repr(value))}')


@dataclass(frozen=True)
class Record:
    """A record as JSON: written with this schema version, read with tolerance (see above)."""

    # What a reader of another minor version wrote, or will read: kept as read.
    schema: str = field(default=SCHEMA_VERSION, kw_only=True)
    unknown: dict[str, Any] = field(default_factory=dict, kw_only=True, compare=False, repr=False)

    def check(self, bounds: MetricBounds) -> None:
        """Raise RecordError for values the schema's types allow but its meaning does not."""
        del bounds

    @classmethod
    def _tidy(cls, values: dict[str, Any]) -> dict[str, Any]:
        """Values bounded before they are written or taken in (a failure reason, say)."""
        return values

    @classmethod
    def _upgrade(
        cls, values: dict[str, Any], unknown: dict[str, Any], version: tuple[int, int]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """A record of an older minor version in this version's shape (its known values, and the
        fields left unknown)."""
        del version
        return values, unknown

    def to_json(self, bounds: MetricBounds | None = None) -> bytes:
        self.check(bounds or {})
        known = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("schema", "unknown")}
        return _dump({**self.unknown, **self._tidy(_plain(known)), "schema": SCHEMA_VERSION})

    @classmethod
    def from_json(cls, data: bytes, bounds: MetricBounds | None = None) -> Self:
        """The record in ``data``, whatever the bytes; RecordError (one line) when they are not one."""
        try:
            obj = typedjson.load_object(data, MAX_RECORD_BYTES)
            major, minor = schema_of(obj.get("schema"))
            if major > SCHEMA_MAJOR:
                raise NewerRecord(f"record schema {major}.{minor} is newer than this kubetune's "
                                  f"{SCHEMA_VERSION}: upgrade the controller")  # fmt: skip
            values = typedjson.read_fields(cls, obj, skip=frozenset({"schema", "unknown"}))
            declared = {f.name for f in fields(cls)}
            unknown = {k: v for k, v in obj.items() if k not in declared}
            values, unknown = cls._upgrade(values, unknown, (major, minor))
            record = cls(**cls._tidy(values), schema=f"{major}.{minor}", unknown=unknown)
            record.check(bounds or {})
        except typedjson.Invalid as exc:
            raise RecordError(str(exc)) from None
        return record


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


def _at_least(value: int | None, low: int, name: str) -> None:
    if value is not None and value < low:
        raise RecordError(f"{name}: must be at least {low}, got {value}")


@dataclass(frozen=True)
class LaunchRecord(Record):
    """``trials/NNNNNN/params.json``: proof that the index was handed out.

    A confirmation run (``confirms`` set) re-trains the configuration of that
    search trial with ``seed``, after the search; the optimizer never hears of it.
    """

    index: int
    params: Params
    launched_at: float
    launcher: str
    gpus: int = 1  # what each attempt holds, for GPU-hour budgets (a local trial counts as one)
    confirms: int | None = None
    seed: int | None = None  # a confirmation run's; None: the study's (trial.seed), or the kind has none
    queue: str | None = None  # the queue its Jobs wait in for admission (Kueue's); None: none

    def check(self, bounds: MetricBounds) -> None:
        del bounds
        _at_least(self.index, 0, "index")
        _at_least(self.gpus, 0, "gpus")
        _at_least(self.confirms, 0, "confirms")
        _at_least(self.seed, 0, "seed")


@dataclass(frozen=True)
class TrialResult(Record):
    """``trials/NNNNNN/result.json``: the outcome of one trial, written once.

    A succeeded record carries a finite ``objective_value``; a failed one
    carries a ``reason`` and no objective value. A pruned one (stopped early
    by a stopping rule) carries a ``reason`` and its last value, if any.
    """

    index: int
    status: Status
    params: Params
    objective: str
    objective_value: float | None = None
    reason: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    wall_time_s: float | None = None
    epoch_times_s: list[float] = field(default_factory=list)
    seed: int | None = None
    versions: dict[str, str] = field(default_factory=dict)
    started_at: float | None = None
    finished_at: float | None = None
    # The last epoch the trial reported (``epochs/``); for a pruned trial, the epoch it reached.
    last_epoch: int | None = None
    # 1.1: the attempt that wrote it (ATTEMPT_ENV), and each epoch's metrics, epoch 1 first:
    # a finished trial's curve without reading its epoch records.
    attempt: int | None = None
    epoch_metrics: list[dict[str, float]] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    @property
    def pruned(self) -> bool:
        return self.status == "pruned"

    def check(self, bounds: MetricBounds) -> None:
        validate_result(self, bounds)

    @classmethod
    def _tidy(cls, values: dict[str, Any]) -> dict[str, Any]:
        reason = values.get("reason")
        return values if reason is None else {**values, "reason": cap_reason(reason)}

    @classmethod
    def _upgrade(
        cls, values: dict[str, Any], unknown: dict[str, Any], version: tuple[int, int]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """1.0's top-level numbers besides the shared fields were a kind's metrics: into metrics."""
        if version >= (1, 1):
            return values, unknown
        numbers = {k: v for k, v in unknown.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        metrics = {k: typedjson.convert(v, float, k) for k, v in numbers.items()}
        return {**values, "metrics": {**values.get("metrics", {}), **metrics}}, {
            k: v for k, v in unknown.items() if k not in numbers
        }


# The range a metric must fall in (accuracies are fractions), declared by the
# trial kind that reports it; a value outside makes the record malformed.
MetricBounds = Mapping[str, tuple[float, float]]


@dataclass(frozen=True)
class EpochRecord(Record):
    """``trials/NNNNNN/epochs/EEEE.json``: a running trial's metrics after one epoch, written once.

    Stopping rules read these; a trial that reports none (an old record, a
    program that reports only at the end) simply never stops early.
    """

    index: int
    epoch: int  # 1-based
    metrics: dict[str, float]
    at: float

    def check(self, bounds: MetricBounds) -> None:
        _at_least(self.index, 0, "index")
        _at_least(self.epoch, 1, "epoch")
        _check_metrics(self.metrics, bounds)


@dataclass(frozen=True)
class AttemptRecord(Record):
    """``trials/NNNNNN/attempts/AA.json``: an attempt the infrastructure took away, written once.

    The trial is launched again with the same parameters; the attempt does
    not count against ``budget.max_failed`` and the optimizer never hears of it.
    """

    index: int
    attempt: int  # 0 for the first launch
    cause: str
    reason: str
    started_at: float
    ended_at: float

    def check(self, bounds: MetricBounds) -> None:
        del bounds
        _at_least(self.index, 0, "index")
        _at_least(self.attempt, 0, "attempt")

    @classmethod
    def _tidy(cls, values: dict[str, Any]) -> dict[str, Any]:
        return {**values, "reason": cap_reason(values["reason"])} if "reason" in values else values


@dataclass(frozen=True)
class AdmissionRecord(Record):
    """``trials/NNNNNN/admissions/AA.json``: when an attempt launched into a queue was admitted, written once.

    Its queue wait is ``admitted_at - queued_at``; what it runs from admission
    on is what GPU-hour budgets count.
    """

    index: int
    attempt: int
    queued_at: float
    admitted_at: float

    @property
    def wait_s(self) -> float:
        return max(0.0, self.admitted_at - self.queued_at)

    def check(self, bounds: MetricBounds) -> None:
        del bounds
        _at_least(self.index, 0, "index")
        _at_least(self.attempt, 0, "attempt")


@dataclass(frozen=True)
class StopRequest(Record):
    """``trials/NNNNNN/stop.json``: why the controller stopped the trial, written once."""

    index: int
    reason: str
    at: float

    def check(self, bounds: MetricBounds) -> None:
        del bounds
        _at_least(self.index, 0, "index")


@dataclass(frozen=True)
class WarmStartRecord(Record):
    """``warm_start.json``: the earlier studies' trials the optimizer was told first, rewritten by
    each controller that starts the study (it reads the stores again)."""

    told: dict[str, int] = field(default_factory=dict)  # store -> trials told
    left_out: dict[str, dict[str, int]] = field(default_factory=dict)  # store -> why -> trials

    @property
    def total(self) -> int:
        return sum(self.told.values())


def failed_result(index: int, params: Params, objective: str, reason: str, **extra: Any) -> TrialResult:
    return TrialResult(
        index=index, status="failed", params=params, objective=objective, reason=reason, **extra
    )


def validate_result(r: TrialResult, bounds: MetricBounds) -> None:
    """Reject records the optimizer must never see: NaN, out of range, mislabelled."""
    _at_least(r.index, 0, "index")
    _at_least(r.last_epoch, 1, "last_epoch")
    _at_least(r.attempt, 0, "attempt")
    if r.status not in STATUSES:
        raise RecordError(f"status: must be one of {', '.join(STATUSES)}, got {r.status!r}")
    if not isinstance(r.objective, str) or not r.objective:
        raise RecordError(f"objective: must name a metric, got {r.objective!r}")
    _check_metrics(r.metrics, bounds)
    for i, epoch in enumerate(r.epoch_metrics):
        _check_metrics(epoch, bounds, f"epoch_metrics[{i}].")
    if r.status != "succeeded" and not r.reason:
        raise RecordError(f"reason: a {r.status} record must say why")
    if r.failed or (r.pruned and r.objective_value is None):
        return
    value = r.objective_value
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RecordError(f"objective_value: must be a finite number, got {value!r}")
    if r.metrics.get(r.objective) != value:
        raise RecordError(f"metrics.{r.objective}: must equal objective_value")


def _check_metrics(metrics: Mapping[str, float], bounds: MetricBounds, where: str = "metrics.") -> None:
    for name, v in metrics.items():
        if not isinstance(v, (int, float)) or not math.isfinite(v):
            raise RecordError(f"{where}{short(name, 40)}: must be a finite number, got {short(repr(v))}")
        low, high = bounds.get(name, (-math.inf, math.inf))
        if not low <= v <= high:
            raise RecordError(f"{where}{short(name, 40)}: must be within [{low:g}, {high:g}], got {v!r}")


def _dump(obj: Mapping[str, Any]) -> bytes:
    # Fields sorted, for a stable layout; within a field, the order the writer gave (a program's
    # metrics in the order it first reported them, which the views keep).
    ordered = {k: obj[k] for k in sorted(obj)}
    return (json.dumps(ordered, indent=2, allow_nan=False) + "\n").encode()
