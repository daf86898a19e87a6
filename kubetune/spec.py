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
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from kubetune.contract import Goal, Params, ParamValue
from kubetune.errors import SpecError as SpecError  # raised here, so also named here
from kubetune.kinds import CNN, KINDS, PROGRAM, CnnSettings, ProgramSettings, TrialKind, kind_of
from kubetune.kinds import program as prog
from kubetune.settings import check, setting, settings_of

# A study name becomes part of Job names (DNS-1123 labels of at most 63
# characters) with a "-NNNNNN" suffix per trial, and label values.
NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
NAME_MAX = 40
BASE_ESTIMATORS = ("GP", "RF", "ET", "GBRT")
ACQ_FUNCS = ("EI", "PI", "LCB", "gp_hedge")
INITIAL_POINT_GENERATORS = ("random", "sobol", "halton", "hammersly", "lhs")
# Goals kubetune knows without being told: the built-in CNN's metrics.
KNOWN_GOALS: Mapping[str, Goal] = CNN.metrics
PRIORS = ("uniform", "log-uniform")
_S = TypeVar("_S")
# What the GP is told for a running trial (kubetune/controller/optimizer.py). Of the constant liars only
# the mean earned a place (BENCHMARKS.md section 4: it wins on the mixed space; cl_min and cl_max never did).
PENDING_STRATEGIES = ("kriging_believer", "cl_mean")
WARPS = ("auto", "none")


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
    goal: Goal = "maximize"


@dataclass(frozen=True)
class OptimizerSettings:
    base_estimator: str = setting("GP", choices=BASE_ESTIMATORS)
    acq_func: str = setting("EI", choices=ACQ_FUNCS)
    n_initial_points: int = setting(
        10, minimum=0, help="random points after x0, before the surrogate model is used"
    )
    initial_point_generator: str = setting("random", choices=INITIAL_POINT_GENERATORS)
    random_state: int = setting(0, minimum=0, help="seeds the optimizer")
    pending: str = setting("kriging_believer", choices=PENDING_STRATEGIES,
                           help="what the GP is told for a running trial")  # fmt: skip
    warp: str = setting("auto", choices=WARPS,
                        help="auto: the GP fitted to Yeo-Johnson-warped losses when its evidence "
                             "prefers them; none: to the losses as they are, as gp_minimize")  # fmt: skip
    # Stores of earlier studies whose finished trials are told first (kubetune/controller/warmstart.py).
    warm_start: tuple[str, ...] = setting(
        (), item="a store (a folder or gs://bucket/prefix)",
        help="stores of earlier studies whose finished trials are told first",
    )  # fmt: skip


@dataclass(frozen=True)
class Budget:
    max_trials: int = setting(60, minimum=1, help="trials in total")
    parallel: int = setting(1, minimum=1, help="trial Jobs at once")
    max_failed: int = setting(5, minimum=1, help="failed trials before the study fails")
    # Told to the optimizer for a failed trial; None: failures are not told.
    failure_penalty: float | None = setting(None)
    max_retries: int = setting(
        3, minimum=0, help="relaunches of a trial the infrastructure lost (spot, eviction)"
    )
    retry_backoff_s: int = setting(30, minimum=0, help="seconds before a lost trial is launched again")
    max_gpu_hours: float | None = setting(None, minimum=0.01, help="GPU hours, lost attempts too; null: none")
    max_hours: float | None = setting(None, minimum=0.01, help="hours from the first launch; null: none")


STOPPING_RULES = ("none", "median", "asha")


@dataclass(frozen=True)
class Stopping:
    """Early stopping: GPU time goes to promising trials (``kubetune.controller.stopping``)."""

    rule: str = setting("none", choices=STOPPING_RULES, help="none, median or asha")
    grace_epochs: int = setting(1, minimum=1, help="median: epochs every trial runs before it may be stopped")
    min_trials: int = setting(3, minimum=1, help="median: completed trials needed to compare an epoch")
    min_epochs: int = setting(1, minimum=1, help="asha: the first rung, in epochs")
    eta: int = setting(3, minimum=2, help="asha: the top 1/eta of a rung go on")
    max_epochs: int | None = setting(None, minimum=2, help="asha: epochs of a full trial; null: trial.epochs")
    grace_period_s: int = setting(60, minimum=0, help="a stopped trial not gone after this is killed")


@dataclass(frozen=True)
class Confirm:
    """After the search, the best configurations trained again on fresh seeds
    (``kubetune.controller.confirmation``): a best that is not the luck of one seed."""

    top_k: int = setting(0, minimum=0, help="configurations re-trained after the search; 0: none")
    seeds: int = setting(3, minimum=1, help="fresh seeds each of them is trained with")


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
    stopping: Stopping = field(default_factory=Stopping)
    confirm: Confirm = field(default_factory=Confirm)
    x0: tuple[Params, ...] = ({"learning_rate": 0.001, "num_dense_layers": 1, "num_dense_nodes": 12},)
    trial: CnnSettings | ProgramSettings = field(default_factory=CnnSettings)

    @property
    def kind(self) -> TrialKind:
        """What the trials train: the built-in CNN, or a program (``trial.kind``)."""
        return kind_of(self.trial)

    def stopping_epochs(self) -> int | None:
        """The epochs of a full trial, as ASHA plans its rungs."""
        epochs = getattr(self.trial, "epochs", None)
        return self.stopping.max_epochs or (epochs if isinstance(epochs, int) else None)

    def full_params(self, point: Params) -> Params:
        """A point of the space completed with the defaults of unsearched hyperparameters."""
        return {**self.kind.defaults(self.trial), **point}

    def to_dict(self) -> dict[str, Any]:
        """The canonical form: what is stored as the study snapshot."""
        return {
            "name": self.name,
            "objective": vars_of(self.objective),
            "space": [_dim_dict(d) for d in self.space],
            "optimizer": vars_of(self.optimizer),
            "budget": vars_of(self.budget),
            "stopping": vars_of(self.stopping),
            "confirm": vars_of(self.confirm),
            "x0": [dict(p) for p in self.x0],
            "trial": self._trial_dict(),
        }

    def _trial_dict(self) -> dict[str, Any]:
        # The CNN's section names no kind: a CNN study's snapshot reads as it always has.
        named = {} if self.kind is CNN else {"kind": self.kind.name}
        return {**named, **vars_of(self.trial)}

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
    trial = top.section("trial")
    kind = KINDS[_choice(trial.get("kind", str, CNN.name), tuple(KINDS), trial.where("kind"))]
    spec = Spec(
        name=_name(top.get("name", str, Spec.name)),
        objective=_objective(top.section("objective"), kind),
        space=_space(top.get("space", list, None), kind),
        optimizer=_section(top.section("optimizer"), OptimizerSettings),
        budget=_section(top.section("budget"), Budget),
        stopping=_section(top.section("stopping"), Stopping),
        confirm=_section(top.section("confirm"), Confirm),
        trial=_section(trial, kind.settings_type),
    )
    if isinstance(spec.trial, ProgramSettings):
        _command(spec.trial.command, spec.space, trial.where("command"))
    x0 = top.get("x0", list, None)
    if x0 is not None:
        spec = replace(spec, x0=tuple(_point(p, f"x0[{i}]", spec.space) for i, p in enumerate(x0)))
    elif kind is not CNN or [d.name for d in spec.space] != [d.name for d in Spec().space]:
        spec = replace(spec, x0=())  # the notebook's x0 fits the notebook's space only
    else:
        spec = replace(spec, x0=tuple(_point(p, "x0", spec.space) for p in Spec.x0))
    top.done()
    _check_stopping(spec)
    if spec.budget.parallel > spec.budget.max_trials:
        raise SpecError(
            f"budget.parallel: {spec.budget.parallel} is more than budget.max_trials "
            f"({spec.budget.max_trials})"
        )
    if len(spec.x0) > spec.budget.max_trials:
        raise SpecError(f"x0: {len(spec.x0)} points but budget.max_trials is {spec.budget.max_trials}")
    return spec


def _check_stopping(spec: Spec) -> None:
    """What one field cannot say alone: the rule's metric and its epochs."""
    rule = spec.stopping.rule
    if rule == "none":
        return
    per_epoch = spec.kind.epoch_metrics
    if per_epoch is not None and spec.objective.metric not in per_epoch:
        raise SpecError(
            f"stopping.rule: {rule} compares {spec.objective.metric!r} after each epoch, but trials "
            "report it only at the end; use an objective reported every epoch "
            f"({', '.join(sorted(per_epoch))})"
        )
    if rule == "asha" and spec.stopping_epochs() is None:
        raise SpecError("stopping.max_epochs: required for asha (the trials have no epochs setting)")


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


def _objective(f: _Fields, kind: TrialKind) -> Objective:
    if kind.metrics:
        metric = _choice(f.get("metric", str, Objective.metric), tuple(kind.metrics), f.where("metric"))
    else:
        # A program reports what it likes: the spec names the metric, and its goal unless kubetune knows it.
        metric = f.get("metric", str, None)
        if metric is None:
            raise SpecError(f"{f.where('metric')}: required (the metric the program reports)")
        if not prog.METRIC_NAME_RE.match(metric):
            raise SpecError(f"{f.where('metric')}: {metric!r} is not a metric name (letters, digits, _, .)")
    known = {**KNOWN_GOALS, **kind.metrics}.get(metric)
    goal = f.get("goal", str, known)
    if goal is None:
        raise SpecError(f"{f.where('goal')}: required for metric {metric!r} (maximize or minimize)")
    _choice(goal, ("maximize", "minimize"), f.where("goal"))
    f.done()
    return Objective(metric, goal)


def _space(items: list[Any] | None, kind: TrialKind) -> tuple[Dimension, ...]:
    if items is None and kind is CNN:
        return _notebook_space()
    if not items:
        raise SpecError("space: must list at least one parameter")
    dims = tuple(_dimension(item, f"space[{i}]", kind) for i, item in enumerate(items))
    for i, dim in enumerate(dims):
        for earlier in dims[:i]:
            if earlier.name == dim.name:
                raise SpecError(f"space[{i}].name: {dim.name!r} appears twice")
            if kind is PROGRAM and prog.env_name(earlier.name) == prog.env_name(dim.name):
                raise SpecError(f"space[{i}].name: {dim.name!r} clashes with {earlier.name!r} "
                                f"(environment variable {prog.env_name(dim.name)})")  # fmt: skip
    return dims


def _param_name(name: str, path: str, kind: TrialKind) -> None:
    if kind is PROGRAM:
        if not prog.PARAM_NAME_RE.match(name):
            raise SpecError(f"{path}.name: {name!r} is not usable as an environment variable name "
                            "(letters, digits and _, not starting with a digit)")  # fmt: skip
        env = prog.env_name(name)
        if env in prog.RESERVED_ENV or env.startswith("KUBETUNE_") or name in prog.BUILTIN_PLACEHOLDERS:
            raise SpecError(f"{path}.name: {name!r} is reserved (it would replace {env} or {{{name}}})")
    elif name not in kind.hyperparameters:
        raise SpecError(
            f"{path}.name: unknown hyperparameter {name!r}; the model takes {', '.join(kind.hyperparameters)}"
        )


def _command(command: str, space: tuple[Dimension, ...], where: str) -> None:
    """A program's command: splits like a shell, and each placeholder names a parameter or a known one."""
    try:
        tokens = shlex.split(command)
    except ValueError as exc:
        raise SpecError(f"{where}: cannot split like a shell: {exc}") from None
    if not tokens:
        raise SpecError(f"{where}: required (the program each trial runs)")
    known = [*(d.name for d in space), *prog.BUILTIN_PLACEHOLDERS]
    for token in tokens:
        try:
            names = prog.placeholders(token)
        except ValueError as exc:
            raise SpecError(f"{where}: {token!r}: {exc} (write {{{{ and }}}} for literal braces)") from None
        for name in names:
            if name not in known:
                raise SpecError(f"{where}: placeholder {{{name}}} names no space parameter; known: "
                                f"{', '.join(known)}")  # fmt: skip


def _dimension(item: Any, path: str, kind: TrialKind) -> Dimension:
    f = _Fields(item, path)
    name = f.get("name", str, None)
    if name is None:
        raise SpecError(f"{path}.name: required")
    _param_name(name, path, kind)
    dim_type = _choice(f.get("type", str, "") or "", ("real", "integer", "categorical"), f.where("type"))
    dim: Dimension
    if dim_type == "categorical":
        values = f.get("values", list, None)
        if not values:
            raise SpecError(f"{path}.values: a categorical needs at least one value")
        for i, v in enumerate(values):
            if not isinstance(v, (int, float, str)) or isinstance(v, bool):
                raise SpecError(f"{path}.values[{i}]: must be a number or a string, got {_kind(v)}")
        choices = kind.choices.get(name)
        for i, v in enumerate(values):
            if choices is not None and v not in choices:
                raise SpecError(f"{path}.values[{i}]: must be one of {', '.join(choices)}; got {v!r}")
        dim = Categorical(name, tuple(values))
    elif dim_type == "integer":
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
    _in_range(dim, path, kind)
    return dim


def _in_range(dim: Dimension, path: str, kind: TrialKind) -> None:
    """A searched value outside what the kind accepts would fail every trial that draws it."""
    if dim.name not in kind.ranges:
        return
    low, high = kind.ranges[dim.name]
    values = dim.values if isinstance(dim, Categorical) else (dim.low, dim.high)
    for v in values:
        if not isinstance(v, (int, float)) or not low <= v <= high:
            raise SpecError(f"{path}: {dim.name} must be within [{low:g}, {high:g}], got {v!r}")


def _bounds(low: float | None, high: float | None, path: str) -> None:
    if low is None:
        raise SpecError(f"{path}.low: required")
    if high is None:
        raise SpecError(f"{path}.high: required")
    if low >= high:
        raise SpecError(f"{path}.low: must be less than high ({low} >= {high})")


def _section(f: _Fields, cls: type[_S]) -> _S:
    """A settings section: every declared field read with its type, default and rule."""
    values = {
        x.name: check(f.get(x.name, x.yaml_kind, x.default), x, f.where(x.name)) for x in settings_of(cls)
    }
    f.done()
    return cls(**values)


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
