"""The contract between the controller and a trial.

Everything the two sides agree on lives here and nowhere else: the trial's
command line, the object names in the store, and the JSON schema of the
records. The controller builds a command with :func:`trial_command`; the trial
parses it with :func:`parse_trial_args`; both name objects with the helpers
below. This module imports nothing heavy, so both sides can use it.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

SCHEMA_VERSION = 1

ParamValue = float | int | str
Params = dict[str, ParamValue]

# Metrics a trial reports; an objective must name one of them.
METRICS: dict[str, Literal["maximize", "minimize"]] = {
    "val_accuracy": "maximize",
    "val_loss": "minimize",
    "test_accuracy": "maximize",
    "test_loss": "minimize",
    "accuracy": "maximize",
    "loss": "minimize",
}
# Accuracies are fractions; anything else in a record is a malformed result.
BOUNDED_METRICS = ("val_accuracy", "test_accuracy", "accuracy")

# Exit codes of `kubetune trial`.
EXIT_OK = 0
EXIT_TRIAL_FAILED = 3  # the trial ran and recorded a failure (e.g. NaN loss)
EXIT_ALREADY_RECORDED = 4  # another run of this trial index wrote first

# --- object names -------------------------------------------------------------

SPEC_OBJECT = "study.yaml"
BEST_OBJECT = "best.json"
HISTORY_OBJECT = "history.csv"
DATASET_PREFIX = "dataset/"
TRIALS_PREFIX = "trials/"


def trial_prefix(index: int) -> str:
    # Zero-padded so a plain listing of the bucket sorts trials by index.
    return f"{TRIALS_PREFIX}{index:06d}/"


def params_object(index: int) -> str:
    """Written by the controller before launching: the launch record."""
    return trial_prefix(index) + "params.json"


def result_object(index: int) -> str:
    """Written once, by the trial or (on its behalf) by the controller."""
    return trial_prefix(index) + "result.json"


def index_of(name: str) -> int | None:
    """The trial index in an object name under ``trials/``, else None."""
    if not name.startswith(TRIALS_PREFIX):
        return None
    head = name[len(TRIALS_PREFIX) :].split("/", 1)[0]
    return int(head) if head.isdigit() else None


# --- trial settings and command line -----------------------------------------

# Keras dtype policies a trial may train under. float32 is the default and the
# notebook's arithmetic; the mixed ones compute in 16 bits and keep float32
# weights: mixed_float16 pays off on GPU tensor cores, mixed_bfloat16 on CPUs
# with AVX512_BF16 / AMX and on recent GPUs (BENCHMARKS.md, section 1).
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


@dataclass(frozen=True)
class TrialSettings:
    """How each trial trains; the same for every trial of a study."""

    epochs: int = 3
    batch_size: int = 512
    train_subset: int | None = None  # None: every training image not held out
    validation_split: float = 0.1
    test_subset: int | None = None  # None: the whole test split
    seed: int = 0
    precision: str = "float32"  # one of PRECISIONS


@dataclass(frozen=True)
class TrialRequest:
    """Everything a trial needs; rendered as its command line."""

    store: str
    study: str
    index: int
    params: Params
    settings: TrialSettings
    objective: str


def trial_command(req: TrialRequest) -> list[str]:
    """The exact argv a trial runs with, locally and in a Kubernetes Job."""
    s = req.settings
    argv = [
        "kubetune",
        "trial",
        "--store",
        req.store,
        "--study",
        req.study,
        "--index",
        str(req.index),
        "--objective",
        req.objective,
        "--params",
        json.dumps(req.params, sort_keys=True),
        "--epochs",
        str(s.epochs),
        "--batch-size",
        str(s.batch_size),
        "--validation-split",
        repr(s.validation_split),
        "--seed",
        str(s.seed),
    ]
    if s.train_subset is not None:
        argv += ["--train-subset", str(s.train_subset)]
    if s.test_subset is not None:
        argv += ["--test-subset", str(s.test_subset)]
    if s.precision != TrialSettings.precision:
        argv += ["--precision", s.precision]
    return argv


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


def add_trial_arguments(parser: argparse.ArgumentParser) -> None:
    """The trial's arguments; `kubetune trial` registers exactly these."""
    parser.add_argument("--store", required=True, help="store URI: a folder or gs://bucket/prefix")
    parser.add_argument("--study", required=True)
    parser.add_argument("--index", required=True, type=int)
    parser.add_argument("--objective", required=True, choices=sorted(METRICS))
    parser.add_argument("--params", required=True, type=_params_arg, help="JSON object")
    parser.add_argument("--epochs", type=int, default=TrialSettings.epochs)
    parser.add_argument("--batch-size", type=int, default=TrialSettings.batch_size)
    parser.add_argument("--validation-split", type=float, default=TrialSettings.validation_split)
    parser.add_argument("--seed", type=int, default=TrialSettings.seed)
    parser.add_argument("--train-subset", type=int, default=None)
    parser.add_argument("--test-subset", type=int, default=None)
    parser.add_argument("--precision", choices=PRECISIONS, default=TrialSettings.precision)


def request_from_args(ns: argparse.Namespace) -> TrialRequest:
    return TrialRequest(
        store=ns.store,
        study=ns.study,
        index=ns.index,
        params=ns.params,
        objective=ns.objective,
        settings=TrialSettings(
            epochs=ns.epochs,
            batch_size=ns.batch_size,
            train_subset=ns.train_subset,
            validation_split=ns.validation_split,
            test_subset=ns.test_subset,
            seed=ns.seed,
            precision=ns.precision,
        ),
    )


def parse_trial_args(argv: Sequence[str]) -> TrialRequest:
    """Parse a trial command line (without the leading ``kubetune trial``)."""
    parser = argparse.ArgumentParser(prog="kubetune trial")
    add_trial_arguments(parser)
    return request_from_args(parser.parse_args(list(argv)))


# --- records ------------------------------------------------------------------


class RecordError(ValueError):
    """A record in the store does not follow the schema."""


@dataclass(frozen=True)
class LaunchRecord:
    """``trials/NNNNNN/params.json``: proof that the index was handed out."""

    index: int
    params: Params
    launched_at: float
    launcher: str
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
                schema=int(obj.get("schema", SCHEMA_VERSION)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RecordError(f"launch record: {exc}") from exc


@dataclass(frozen=True)
class TrialResult:
    """``trials/NNNNNN/result.json``: the outcome of one trial, written once.

    A succeeded record carries a finite ``objective_value``; a failed one
    carries a ``reason`` and no objective value.
    """

    index: int
    status: Literal["succeeded", "failed"]
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
    schema: int = SCHEMA_VERSION

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    def to_json(self) -> bytes:
        validate_result(self)
        return _dump(asdict(self))

    @classmethod
    def from_json(cls, data: bytes) -> TrialResult:
        obj = _load(data)
        try:
            result = cls(**obj)
        except TypeError as exc:
            raise RecordError(f"result record: {exc}") from exc
        validate_result(result)
        return result


def failed_result(index: int, params: Params, objective: str, reason: str, **extra: Any) -> TrialResult:
    return TrialResult(
        index=index, status="failed", params=params, objective=objective, reason=reason, **extra
    )


def validate_result(r: TrialResult) -> None:
    """Reject records the optimizer must never see: NaN, out of range, mislabelled."""
    if r.status not in ("succeeded", "failed"):
        raise RecordError(f"status: must be 'succeeded' or 'failed', got {r.status!r}")
    if r.objective not in METRICS:
        raise RecordError(f"objective: unknown metric {r.objective!r}")
    if r.status == "failed":
        if not r.reason:
            raise RecordError("reason: a failed record must say why")
        return
    value = r.objective_value
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RecordError(f"objective_value: must be a finite number, got {value!r}")
    if r.metrics.get(r.objective) != value:
        raise RecordError(f"metrics.{r.objective}: must equal objective_value")
    for name in BOUNDED_METRICS:
        v = r.metrics.get(name)
        if v is not None and not 0.0 <= v <= 1.0:
            raise RecordError(f"metrics.{name}: must be within [0, 1], got {v!r}")
    for name, v in r.metrics.items():
        if not math.isfinite(v):
            raise RecordError(f"metrics.{name}: must be finite, got {v!r}")


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
