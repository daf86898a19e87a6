"""The study spec: one YAML format for the local study and the Helm chart.

``load_spec`` turns YAML into frozen dataclasses or raises a SpecError whose
message is one line that names the field ("space[1].low: ...") and the
problem. Every default reproduces the notebook the project grew from.
"""

from __future__ import annotations

import contextlib
import difflib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import yaml

from kubetune.contract import METRICS, PRECISIONS, Params, ParamValue, TrialSettings
from kubetune.errors import UsageError

# The CNN's hyperparameters and the value a trial uses for any not searched.
HYPERPARAMETERS: dict[str, ParamValue] = {
    "learning_rate": 0.001,
    "num_dense_layers": 1,
    "num_dense_nodes": 12,
}
# A study name becomes part of Job names (DNS-1123 labels of at most 63
# characters) with a "-NNNNNN" suffix per trial, and label values.
NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
NAME_MAX = 40
BASE_ESTIMATORS = ("GP", "RF", "ET", "GBRT")
ACQ_FUNCS = ("EI", "PI", "LCB", "gp_hedge")
INITIAL_POINT_GENERATORS = ("random", "sobol", "halton", "hammersly", "lhs")
PRIORS = ("uniform", "log-uniform")
# What the GP is told for a running trial (kubetune/optimizer.py). Of the constant liars only the
# mean earned a place (BENCHMARKS.md section 4: it wins on the mixed space; cl_min and cl_max never did).
PENDING_STRATEGIES = ("kriging_believer", "cl_mean")


class SpecError(UsageError):
    """The spec is invalid; the message names the field."""


@dataclass(frozen=True)
class Real:
    name: str
    low: float
    high: float
    prior: Literal["uniform", "log-uniform"] = "uniform"


@dataclass(frozen=True)
class Integer:
    name: str
    low: int
    high: int


@dataclass(frozen=True)
class Categorical:
    name: str
    values: tuple[ParamValue, ...]


Dimension = Real | Integer | Categorical


@dataclass(frozen=True)
class Objective:
    metric: str = "val_accuracy"
    goal: Literal["maximize", "minimize"] = "maximize"


@dataclass(frozen=True)
class OptimizerSettings:
    base_estimator: str = "GP"
    acq_func: str = "EI"
    n_initial_points: int = 10
    initial_point_generator: str = "random"
    random_state: int = 0
    pending: str = "kriging_believer"
    # Stores of earlier studies whose finished trials are told first (kubetune/warmstart.py).
    warm_start: tuple[str, ...] = ()


@dataclass(frozen=True)
class Budget:
    max_trials: int = 60
    parallel: int = 1
    max_failed: int = 5
    # Told to the optimizer for a failed trial; None: failures are not told.
    failure_penalty: float | None = None


def _notebook_space() -> tuple[Dimension, ...]:
    return (
        Real("learning_rate", 1e-5, 1e-1, "log-uniform"),
        Integer("num_dense_layers", 1, 5),
        Integer("num_dense_nodes", 5, 512),
    )


@dataclass(frozen=True)
class Spec:
    name: str = "fashion-mnist"
    objective: Objective = field(default_factory=Objective)
    space: tuple[Dimension, ...] = field(default_factory=_notebook_space)
    optimizer: OptimizerSettings = field(default_factory=OptimizerSettings)
    budget: Budget = field(default_factory=Budget)
    x0: tuple[Params, ...] = ({"learning_rate": 0.001, "num_dense_layers": 1, "num_dense_nodes": 12},)
    trial: TrialSettings = field(default_factory=TrialSettings)

    def full_params(self, point: Params) -> Params:
        """A point of the space completed with the defaults of unsearched hyperparameters."""
        return {**HYPERPARAMETERS, **point}

    def to_dict(self) -> dict[str, Any]:
        """The canonical form: what is stored as the study snapshot."""
        return {
            "name": self.name,
            "objective": vars_of(self.objective),
            "space": [_dim_dict(d) for d in self.space],
            "optimizer": vars_of(self.optimizer),
            "budget": vars_of(self.budget),
            "x0": [dict(p) for p in self.x0],
            "trial": vars_of(self.trial),
        }

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def vars_of(obj: object) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in vars(obj).items()}


def _dim_dict(d: Dimension) -> dict[str, Any]:
    kind = {Real: "real", Integer: "integer", Categorical: "categorical"}[type(d)]
    out: dict[str, Any] = {"name": d.name, "type": kind}
    out.update({k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(d).items() if k != "name"})
    return out


# --- loading ------------------------------------------------------------------


def load_spec(path: str | Path) -> Spec:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise SpecError(f"{path}: cannot read ({exc.strerror})") from None
    return parse_spec(text, source=str(path))


def parse_spec(text: str, source: str = "spec") -> Spec:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "cannot parse"
        raise SpecError(f"{source}: malformed YAML{where}: {problem}") from None
    return spec_from_dict({} if doc is None else doc)


def spec_from_dict(doc: Any) -> Spec:
    top = _Fields(doc, "")
    spec = Spec(
        name=_name(top.get("name", str, Spec.name)),
        objective=_objective(top.section("objective")),
        space=_space(top.get("space", list, None)),
        optimizer=_optimizer(top.section("optimizer")),
        budget=_budget(top.section("budget")),
        trial=_trial(top.section("trial")),
    )
    x0 = top.get("x0", list, None)
    if x0 is not None:
        spec = replace(spec, x0=tuple(_point(p, f"x0[{i}]", spec.space) for i, p in enumerate(x0)))
    elif [d.name for d in spec.space] != [d.name for d in Spec().space]:
        spec = replace(spec, x0=())  # the notebook's x0 fits the notebook's space only
    else:
        spec = replace(spec, x0=tuple(_point(p, "x0", spec.space) for p in Spec.x0))
    top.done()
    if spec.budget.parallel > spec.budget.max_trials:
        raise SpecError(
            f"budget.parallel: {spec.budget.parallel} is more than budget.max_trials "
            f"({spec.budget.max_trials})"
        )
    if len(spec.x0) > spec.budget.max_trials:
        raise SpecError(f"x0: {len(spec.x0)} points but budget.max_trials is {spec.budget.max_trials}")
    return spec


class _Fields:
    """Typed access to one mapping of the YAML document, with its path for errors."""

    def __init__(self, obj: Any, path: str) -> None:
        if not isinstance(obj, Mapping):
            raise SpecError(f"{path or 'spec'}: must be a mapping, got {_kind(obj)}")
        self.obj = obj
        self.path = path
        self.seen: set[str] = set()

    def where(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def get(self, key: str, kind: type, default: Any) -> Any:
        self.seen.add(key)
        if key not in self.obj or self.obj[key] is None:
            return default
        return _typed(self.obj[key], kind, self.where(key))

    def section(self, key: str) -> _Fields:
        self.seen.add(key)
        return _Fields(self.obj.get(key) or {}, self.where(key))

    def done(self) -> None:
        for key in self.obj:
            if key not in self.seen:
                close = difflib.get_close_matches(str(key), sorted(self.seen), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise SpecError(f"{self.where(str(key))}: unknown field{hint}")


def _typed(value: Any, kind: type, where: str) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is float and isinstance(value, str):
        # YAML 1.1 reads "1e-5" (no dot) as a string; accept it as a number.
        with contextlib.suppress(ValueError):
            value = float(value)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise SpecError(f"{where}: must be {_kind_name(kind)}, got {_kind(value)} {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise SpecError(f"{where}: must be a finite number, got {value!r}")
    return value


def _kind_name(kind: type) -> str:
    return {int: "an integer", float: "a number", str: "a string", list: "a list"}.get(kind, kind.__name__)


def _kind(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
        type(None): "nothing",
    }.get(type(value), type(value).__name__)


def _positive(value: int, where: str, minimum: int = 1) -> int:
    if value < minimum:
        raise SpecError(f"{where}: must be at least {minimum}, got {value}")
    return value


def _choice(value: str, choices: tuple[str, ...], where: str) -> str:
    if value not in choices:
        raise SpecError(f"{where}: must be one of {', '.join(choices)}; got {value!r}")
    return value


def _name(name: str) -> str:
    if len(name) > NAME_MAX:
        raise SpecError(f"name: at most {NAME_MAX} characters (it prefixes Job names), got {len(name)}")
    if not NAME_RE.match(name):
        raise SpecError(
            f"name: {name!r} is not DNS-safe (lower-case letters, digits and '-', "
            "starting and ending with a letter or digit)"
        )
    return name


def _objective(f: _Fields) -> Objective:
    metric = _choice(f.get("metric", str, Objective.metric), tuple(METRICS), f.where("metric"))
    goal = _choice(f.get("goal", str, METRICS[metric]), ("maximize", "minimize"), f.where("goal"))
    f.done()
    return Objective(metric, goal)  # type: ignore[arg-type]


def _space(items: list[Any] | None) -> tuple[Dimension, ...]:
    if items is None:
        return _notebook_space()
    if not items:
        raise SpecError("space: must list at least one parameter")
    dims = tuple(_dimension(item, f"space[{i}]") for i, item in enumerate(items))
    names = [d.name for d in dims]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise SpecError(f"space[{i}].name: {name!r} appears twice")
    return dims


def _dimension(item: Any, path: str) -> Dimension:
    f = _Fields(item, path)
    name = f.get("name", str, None)
    if name is None:
        raise SpecError(f"{path}.name: required")
    if name not in HYPERPARAMETERS:
        raise SpecError(
            f"{path}.name: unknown hyperparameter {name!r}; the model takes {', '.join(HYPERPARAMETERS)}"
        )
    kind = _choice(f.get("type", str, "") or "", ("real", "integer", "categorical"), f.where("type"))
    dim: Dimension
    if kind == "categorical":
        values = f.get("values", list, None)
        if not values:
            raise SpecError(f"{path}.values: a categorical needs at least one value")
        for i, v in enumerate(values):
            if not isinstance(v, (int, float, str)) or isinstance(v, bool):
                raise SpecError(f"{path}.values[{i}]: must be a number or a string, got {_kind(v)}")
        dim = Categorical(name, tuple(values))
    elif kind == "integer":
        low, high = f.get("low", int, None), f.get("high", int, None)
        _bounds(low, high, path)
        dim = Integer(name, low, high)
    else:
        low, high = f.get("low", float, None), f.get("high", float, None)
        prior = _choice(f.get("prior", str, "uniform"), PRIORS, f.where("prior"))
        _bounds(low, high, path)
        if prior == "log-uniform" and low <= 0:
            raise SpecError(f"{path}.low: a log-uniform prior needs low > 0, got {low}")
        dim = Real(name, low, high, prior)  # type: ignore[arg-type]
    f.done()
    return dim


def _bounds(low: float | None, high: float | None, path: str) -> None:
    if low is None:
        raise SpecError(f"{path}.low: required")
    if high is None:
        raise SpecError(f"{path}.high: required")
    if low >= high:
        raise SpecError(f"{path}.low: must be less than high ({low} >= {high})")


def _optimizer(f: _Fields) -> OptimizerSettings:
    d = OptimizerSettings()
    opt = OptimizerSettings(
        base_estimator=_choice(
            f.get("base_estimator", str, d.base_estimator), BASE_ESTIMATORS, f.where("base_estimator")
        ),
        acq_func=_choice(f.get("acq_func", str, d.acq_func), ACQ_FUNCS, f.where("acq_func")),
        n_initial_points=_positive(
            f.get("n_initial_points", int, d.n_initial_points), f.where("n_initial_points"), 0
        ),
        initial_point_generator=_choice(
            f.get("initial_point_generator", str, d.initial_point_generator),
            INITIAL_POINT_GENERATORS,
            f.where("initial_point_generator"),
        ),
        random_state=_positive(f.get("random_state", int, d.random_state), f.where("random_state"), 0),
        pending=_choice(f.get("pending", str, d.pending), PENDING_STRATEGIES, f.where("pending")),
        warm_start=_uris(f.get("warm_start", list, []), f.where("warm_start")),
    )
    f.done()
    return opt


def _uris(items: list[Any], where: str) -> tuple[str, ...]:
    for i, uri in enumerate(items):
        if not isinstance(uri, str) or not uri:
            raise SpecError(f"{where}[{i}]: must be a store (a folder or gs://bucket/prefix), got {uri!r}")
    return tuple(items)


def _budget(f: _Fields) -> Budget:
    d = Budget()
    budget = Budget(
        max_trials=_positive(f.get("max_trials", int, d.max_trials), f.where("max_trials")),
        parallel=_positive(f.get("parallel", int, d.parallel), f.where("parallel")),
        max_failed=_positive(f.get("max_failed", int, d.max_failed), f.where("max_failed")),
        failure_penalty=f.get("failure_penalty", float, d.failure_penalty),
    )
    f.done()
    return budget


def _trial(f: _Fields) -> TrialSettings:
    d = TrialSettings()
    split = f.get("validation_split", float, d.validation_split)
    if not 0.0 < split < 1.0:
        raise SpecError(f"trial.validation_split: must be between 0 and 1 (exclusive), got {split}")
    train_subset = f.get("train_subset", int, None)
    test_subset = f.get("test_subset", int, None)
    precision = f.get("precision", str, d.precision)
    if precision not in PRECISIONS:
        raise SpecError(f"{f.where('precision')}: {precision!r} is not one of {list(PRECISIONS)}")
    settings = TrialSettings(
        epochs=_positive(f.get("epochs", int, d.epochs), f.where("epochs")),
        batch_size=_positive(f.get("batch_size", int, d.batch_size), f.where("batch_size")),
        train_subset=None if train_subset is None else _positive(train_subset, f.where("train_subset")),
        validation_split=split,
        test_subset=None if test_subset is None else _positive(test_subset, f.where("test_subset")),
        seed=_positive(f.get("seed", int, d.seed), f.where("seed"), 0),
        precision=precision,
    )
    f.done()
    return settings


def _point(raw: Any, path: str, space: tuple[Dimension, ...]) -> Params:
    f = _Fields(raw, path)
    point: Params = {}
    for dim in space:
        value = f.get(dim.name, object, None)
        if value is None:
            raise SpecError(f"{path}.{dim.name}: required (x0 points give every searched parameter)")
        point[dim.name] = _in_dimension(value, dim, f.where(dim.name))
    f.done()
    return point


def _in_dimension(value: Any, dim: Dimension, where: str) -> ParamValue:
    if isinstance(dim, Categorical):
        if value not in dim.values:
            raise SpecError(f"{where}: {value!r} is not one of {list(dim.values)}")
        return value  # type: ignore[no-any-return]
    number = _typed(value, int if isinstance(dim, Integer) else float, where)
    if not dim.low <= number <= dim.high:
        raise SpecError(f"{where}: {number} is outside [{dim.low}, {dim.high}]")
    return number  # type: ignore[no-any-return]
