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
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal, Protocol, Self

from kubetune.settings import add_arguments, from_args, to_argv

SCHEMA_VERSION = 1

ParamValue = float | int | str
Params = dict[str, ParamValue]
Goal = Literal["maximize", "minimize"]
Status = Literal["succeeded", "failed", "pruned"]
STATUSES: tuple[Status, ...] = ("succeeded", "failed", "pruned")

# Exit codes of `kubetune trial`.
EXIT_OK = 0
EXIT_TRIAL_FAILED = 3  # the trial ran and recorded a failure (e.g. NaN loss)
EXIT_ALREADY_RECORDED = 4  # another run of this trial index wrote first

# --- object names -------------------------------------------------------------

SPEC_OBJECT = "study.yaml"
BEST_OBJECT = "best.json"
HISTORY_OBJECT = "history.csv"
REPORT_OBJECT = "report.html"
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


def trial_command(req: TrialRequest) -> list[str]:
    """The exact argv a trial runs with, locally and in a Kubernetes Job."""
    generic = ["--store", req.store, "--study", req.study, "--index", str(req.index),
               "--objective", req.objective, "--params", json.dumps(req.params, sort_keys=True)]  # fmt: skip
    if req.save_model:
        generic.append("--save-model")
    # A kind's settings may name a subcommand (a program's: `kubetune trial exec`).
    sub = getattr(req.settings, "subcommand", ())
    return ["kubetune", "trial", *sub, *generic, *to_argv(req.settings)]


def parse_trial_args(argv: Sequence[str], kind: TrialKindInfo) -> TrialRequest:
    """Parse a trial command line (without the leading ``kubetune trial``)."""
    parser = argparse.ArgumentParser(prog="kubetune trial")
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


class RecordError(ValueError):
    """A record in the store does not follow the schema."""


@dataclass(frozen=True)
class LaunchRecord:
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
    schema: int = SCHEMA_VERSION

    def to_json(self) -> bytes:
        return _dump(asdict(self))

    @classmethod
    def from_json(cls, data: bytes) -> LaunchRecord:
        obj = _load(data)
        try:
            return cls(
                index=int(obj["index"]),
                params=dict(obj["params"]),
                launched_at=float(obj["launched_at"]),
                launcher=str(obj["launcher"]),
                gpus=int(obj.get("gpus", 1)),
                confirms=_optional_int(obj.get("confirms")),
                seed=_optional_int(obj.get("seed")),
                schema=int(obj.get("schema", SCHEMA_VERSION)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RecordError(f"launch record: {exc}") from exc


@dataclass(frozen=True)
class TrialResult:
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
    images_per_s: float | None = None
    param_count: int | None = None
    seed: int | None = None
    versions: dict[str, str] = field(default_factory=dict)
    started_at: float | None = None
    finished_at: float | None = None
    # The last epoch the trial reported (``epochs/``); for a pruned trial, the epoch it reached.
    last_epoch: int | None = None
    schema: int = SCHEMA_VERSION

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    @property
    def pruned(self) -> bool:
        return self.status == "pruned"

    def to_json(self, bounds: MetricBounds | None = None) -> bytes:
        validate_result(self, bounds or {})
        return _dump(asdict(self))

    @classmethod
    def from_json(cls, data: bytes, bounds: MetricBounds | None = None) -> TrialResult:
        obj = _load(data)
        try:
            result = cls(**obj)
        except TypeError as exc:
            raise RecordError(f"result record: {exc}") from exc
        validate_result(result, bounds or {})
        return result


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


# The range a metric must fall in (accuracies are fractions), declared by the
# trial kind that reports it; a value outside makes the record malformed.
MetricBounds = Mapping[str, tuple[float, float]]


@dataclass(frozen=True)
class EpochRecord:
    """``trials/NNNNNN/epochs/EEEE.json``: a running trial's metrics after one epoch, written once.

    Stopping rules read these; a trial that reports none (an old record, a
    program that reports only at the end) simply never stops early.
    """

    index: int
    epoch: int  # 1-based
    metrics: dict[str, float]
    at: float
    schema: int = SCHEMA_VERSION

    def to_json(self, bounds: MetricBounds | None = None) -> bytes:
        _check_metrics(self.metrics, bounds or {})
        return _dump(asdict(self))

    @classmethod
    def from_json(cls, data: bytes, bounds: MetricBounds | None = None) -> EpochRecord:
        obj = _load(data)
        try:
            record = cls(**obj)
        except TypeError as exc:
            raise RecordError(f"epoch record: {exc}") from exc
        if not isinstance(record.epoch, int) or record.epoch < 1:
            raise RecordError(f"epoch: must be a positive integer, got {record.epoch!r}")
        _check_metrics(record.metrics, bounds or {})
        return record


class _Plain:
    """A record that is just its fields, as JSON: written and read back as it is."""

    _what: ClassVar[str]

    def to_json(self) -> bytes:
        return _dump(asdict(self))  # type: ignore[call-overload]

    @classmethod
    def from_json(cls, data: bytes) -> Self:
        try:
            return cls(**_load(data))
        except TypeError as exc:
            raise RecordError(f"{cls._what}: {exc}") from exc


@dataclass(frozen=True)
class AttemptRecord(_Plain):
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
    schema: int = SCHEMA_VERSION
    _what: ClassVar[str] = "attempt record"


@dataclass(frozen=True)
class StopRequest(_Plain):
    """``trials/NNNNNN/stop.json``: why the controller stopped the trial, written once."""

    index: int
    reason: str
    at: float
    schema: int = SCHEMA_VERSION
    _what: ClassVar[str] = "stop request"


def failed_result(index: int, params: Params, objective: str, reason: str, **extra: Any) -> TrialResult:
    return TrialResult(
        index=index, status="failed", params=params, objective=objective, reason=reason, **extra
    )


def validate_result(r: TrialResult, bounds: MetricBounds) -> None:
    """Reject records the optimizer must never see: NaN, out of range, mislabelled."""
    if r.status not in STATUSES:
        raise RecordError(f"status: must be one of {', '.join(STATUSES)}, got {r.status!r}")
    if not isinstance(r.objective, str) or not r.objective:
        raise RecordError(f"objective: must name a metric, got {r.objective!r}")
    _check_metrics(r.metrics, bounds)
    if r.status != "succeeded" and not r.reason:
        raise RecordError(f"reason: a {r.status} record must say why")
    if r.failed or (r.pruned and r.objective_value is None):
        return
    value = r.objective_value
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RecordError(f"objective_value: must be a finite number, got {value!r}")
    if r.metrics.get(r.objective) != value:
        raise RecordError(f"metrics.{r.objective}: must equal objective_value")


def _check_metrics(metrics: Mapping[str, float], bounds: MetricBounds) -> None:
    for name, v in metrics.items():
        if not isinstance(v, (int, float)) or not math.isfinite(v):
            raise RecordError(f"metrics.{name}: must be a finite number, got {v!r}")
        low, high = bounds.get(name, (-math.inf, math.inf))
        if not low <= v <= high:
            raise RecordError(f"metrics.{name}: must be within [{low:g}, {high:g}], got {v!r}")


def _dump(obj: Mapping[str, Any]) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n").encode()


def _load(data: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RecordError(f"not valid JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise RecordError("must be a JSON object")
    return obj
