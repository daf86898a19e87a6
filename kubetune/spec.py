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
from typing import Any, Literal, TypeVar

import yaml

from kubetune import kinds, names
from kubetune.contract import MEASURED_METRICS, Goal, Params, ParamValue
from kubetune.errors import SpecError as SpecError  # raised here, so also named here
from kubetune.kinds import Settings, TrialKind
from kubetune.settings import check, setting, settings_of

# A study name becomes part of Job names (DNS-1123 labels of at most 63
# characters) with a "-NNNNNN" suffix per trial, and label values.
NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
NAME_MAX = 40
BASE_ESTIMATORS = ("GP", "RF", "ET", "GBRT")
ACQ_FUNCS = ("EI", "PI", "LCB", "gp_hedge")
INITIAL_POINT_GENERATORS = ("random", "sobol", "halton", "hammersly", "lhs")
PRIORS = ("uniform", "log-uniform")
# numpy's RandomState seeds, which skopt takes; integers past this lose precision in JSON.
SEED_MAX = 2**32 - 1
INT_MAX = 2**53
CATEGORIES_MAX = 1000  # the GP one-hot encodes a categorical: its cost grows with the count
_S = TypeVar("_S")
# What the model is told for a running trial, whichever base_estimator (kubetune/controller/search/).
# Of the constant liars only the mean earned a place (BENCHMARKS.md section 4: it wins on the mixed
# space; cl_min and cl_max never did).
PENDING_STRATEGIES = ("kriging_believer", "cl_mean")
WARPS = ("auto", "none")
# auto: every other GP ask within a trust region around the best trial, the asks between over the
# whole space; every fit under a prior that keeps its length scales off their upper bound, the
# whole-space asks' also under Optuna's whole prior where that predicts the trials better
# (one objective and no constraints; ParEGO's weights move the best at every ask, so several
# objectives search the whole space); none: every ask over the whole space, no prior, as
# gp_minimize (BENCHMARKS.md section 14).
TRUST_REGIONS = ("auto", "none")
# Fields a resumed study may change: raising max_trials extends a study; a
# confirmation phase may be asked for (or widened) after the search. The
# Study resource holds its other fields immutable (kubetune.crd).
RESUMABLE_CHANGES = ("budget", "confirm")


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
class Constraint:
    """A metric a feasible trial keeps within its bounds (at least one of them given)."""

    metric: str
    max: float | None = None
    min: float | None = None

    def holds(self, value: float) -> bool:
        return (self.max is None or value <= self.max) and (self.min is None or value >= self.min)


DESIGN_MAX = 10_000


@dataclass(frozen=True)
class OptimizerSettings:
    base_estimator: str = setting("GP", choices=BASE_ESTIMATORS)
    acq_func: str = setting("EI", choices=ACQ_FUNCS)
    # A study draws its whole design once, at its first ask (kubetune/controller/optimizer.py):
    # at DESIGN_MAX points, 0.03-0.4 s of CPU whichever the generator.
    n_initial_points: int = setting(
        10, minimum=0, maximum=DESIGN_MAX, help="random points after x0, before the surrogate model is used"
    )
    initial_point_generator: str = setting("random", choices=INITIAL_POINT_GENERATORS)
    random_state: int = setting(0, minimum=0, maximum=SEED_MAX, help="seeds the optimizer")
    pending: str = setting("kriging_believer", choices=PENDING_STRATEGIES,
                           help="what the model is told for a running trial")  # fmt: skip
    warp: str = setting("auto", choices=WARPS,
                        help="auto: the model fitted to Yeo-Johnson-warped losses when the evidence "
                             "prefers them; none: to the losses as they are, as gp_minimize")  # fmt: skip
    trust_region: str = setting("auto", choices=TRUST_REGIONS,
                                help="auto: every other GP ask within a trust region around the "
                                     "best trial, the asks between over the whole space; a prior "
                                     "keeps each length scale off its upper bound, and the whole-"
                                     "space asks' model is refitted with a fuller prior where that "
                                     "predicts the trials better (one objective, no constraints); "
                                     "none: every ask over the whole space, no prior")  # fmt: skip
    # Stores of earlier studies whose finished trials are told first (kubetune/controller/warmstart.py).
    warm_start: tuple[str, ...] = setting(
        (), item="a store (a folder or gs://bucket/prefix)",
        help="stores of earlier studies whose finished trials are told first",
    )  # fmt: skip


@dataclass(frozen=True)
class Budget:
    max_trials: int = setting(60, minimum=1, help="trials in total")
    parallel: int = setting(1, minimum=1, help="trial Jobs at once")
    # With a queue, a point is chosen when it is launched: one queued trial keeps the next
    # quota slot busy, more are chosen on staler results (BENCHMARKS.md section 10). At least
    # one: every trial waits in the queue until admitted, so 0 would never launch one.
    max_queued: int = setting(1, minimum=1, help="with a queue: at most this many trials wait to be admitted")
    max_failed: int = setting(5, minimum=1, help="failed trials before the study fails")
    # Told to the optimizer for a failed trial; None: failures are not told.
    failure_penalty: float | None = setting(None)
    max_retries: int = setting(
        3, minimum=0, help="relaunches of a trial the infrastructure lost (spot, eviction, queue preemption)"
    )
    retry_backoff_s: int = setting(
        30, minimum=0, help="seconds before a lost trial is launched again (none after a queue evicted it)"
    )
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


def _default_space() -> tuple[Dimension, ...]:
    """The default kind's space (the notebook's)."""
    return _space(None, kinds.DEFAULT)


# The spec's top-level fields as YAML gives them, in the order the snapshot writes them: one
# objective is written as ``objective``, several as ``objectives`` (the Study CRD and the chart's
# schema accept both).
TOP_FIELDS = ("name", "objective", "objectives", "constraints", "space", "optimizer", "budget",
              "stopping", "confirm", "x0", "trial")  # fmt: skip


@dataclass(frozen=True)
class Spec:
    name: str = "fashion-mnist"
    # The first objective is the one a trial reports as its objective_value, the views rank by
    # and stopping rules follow; with several, the search looks for their Pareto front.
    objectives: tuple[Objective, ...] = (Objective(),)
    constraints: tuple[Constraint, ...] = ()
    space: tuple[Dimension, ...] = field(default_factory=_default_space)
    optimizer: OptimizerSettings = field(default_factory=OptimizerSettings)
    budget: Budget = field(default_factory=Budget)
    stopping: Stopping = field(default_factory=Stopping)
    confirm: Confirm = field(default_factory=Confirm)
    x0: tuple[Params, ...] = kinds.DEFAULT.default_x0
    # An instance of a registered kind's settings_type (``kubetune.kinds``): trial.kind picks it.
    trial: Settings = field(default_factory=kinds.DEFAULT.settings_type)

    @property
    def objective(self) -> Objective:
        """The first objective: the trials' objective_value, and the one a single-objective view ranks by."""
        return self.objectives[0]

    @property
    def multi(self) -> bool:
        """Whether the search weighs more than one number: several objectives, or constraints."""
        return len(self.objectives) > 1 or bool(self.constraints)

    @property
    def weighed(self) -> list[str]:
        """The metrics a trial must report beside its objective value: the other objectives', then
        the constrained ones'."""
        return [*(o.metric for o in self.objectives[1:]), *(c.metric for c in self.constraints)]

    @property
    def measured(self) -> frozenset[str]:
        """The controller-measured metrics (contract.MEASURED_METRICS) an objective or constraint names."""
        named = {o.metric for o in self.objectives} | {c.metric for c in self.constraints}
        return frozenset(named & MEASURED_METRICS.keys())

    @property
    def kind(self) -> TrialKind:
        """What the trials train (``trial.kind``): the notebook's CNN by default."""
        return kinds.of(self.trial)

    def stopping_epochs(self) -> int | None:
        """The epochs of a full trial, as ASHA plans its rungs."""
        epochs = self.kind.setting(self.trial, self.kind.epochs)
        return self.stopping.max_epochs or (epochs if isinstance(epochs, int) else None)

    def full_params(self, point: Params) -> Params:
        """A point of the space completed with the defaults of unsearched hyperparameters."""
        return {**self.kind.defaults(self.trial), **point}

    def to_dict(self) -> dict[str, Any]:
        """The canonical form: what is stored as the study snapshot."""
        objectives = [vars_of(o) for o in self.objectives]
        # One objective reads as it always has; constraints only where there are some.
        head = {"objective": objectives[0]} if len(objectives) == 1 else {"objectives": objectives}
        bounds = [{k: v for k, v in vars(c).items() if v is not None} for c in self.constraints]
        return {
            "name": self.name,
            **head,
            **({"constraints": bounds} if bounds else {}),
            "space": [_dim_dict(d) for d in self.space],
            "optimizer": vars_of(self.optimizer),
            "budget": vars_of(self.budget),
            "stopping": vars_of(self.stopping),
            "confirm": vars_of(self.confirm),
            "x0": [dict(p) for p in self.x0],
            "trial": self._trial_dict(),
        }

    def _trial_dict(self) -> dict[str, Any]:
        # The default kind's section names no kind: its snapshot reads as it always has.
        named = {} if self.kind is kinds.DEFAULT else {"kind": self.kind.name}
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


def parse_spec(text: str, source: str = "spec", strict: bool = True) -> Spec:
    try:
        doc = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "cannot parse"
        raise SpecError(f"{source}: malformed YAML{where}: {problem}") from None
    except RecursionError:
        raise SpecError(f"{source}: malformed YAML: nested too deeply") from None
    except ValueError as exc:  # an integer of more digits than Python converts
        raise SpecError(f"{source}: malformed YAML: {str(exc)[:80]}") from None
    return spec_from_dict({} if doc is None else doc, strict)


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (it would keep the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str | int | float | bool) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def spec_from_dict(doc: Any, strict: bool = True) -> Spec:
    """The spec in ``doc``; ``strict=False`` for a stored snapshot (``_check_new`` is skipped)."""
    top = _Fields(doc, "")
    trial = top.section("trial")
    registered = kinds.registry()
    kind = registered[
        _choice(trial.get("kind", str, kinds.DEFAULT.name), tuple(registered), trial.where("kind"))
    ]
    spec = Spec(
        name=_name(top.get("name", str, Spec.name)),
        objectives=_objectives(top, kind),
        space=_space(top.get("space", list, None), kind),
        optimizer=_section(top.section("optimizer"), OptimizerSettings),
        budget=_section(top.section("budget"), Budget),
        stopping=_section(top.section("stopping"), Stopping),
        confirm=_section(top.section("confirm"), Confirm),
        trial=_section(trial, kind.settings_type),
    )
    spec = replace(spec, constraints=_constraints(top.get("constraints", list, []), kind, spec.objectives))
    problem = kind.check(spec.trial, [d.name for d in spec.space])
    if problem:
        raise SpecError(problem)
    x0 = top.get("x0", list, None)
    if x0 is not None:
        spec = replace(spec, x0=tuple(_point(p, f"x0[{i}]", spec.space) for i, p in enumerate(x0)))
    elif not kind.default_space or spec.space != _space(None, kind):
        spec = replace(spec, x0=())  # the kind's first points fit its default space only
    else:
        spec = replace(spec, x0=tuple(_point(p, "x0", spec.space) for p in kind.default_x0))
    top.done()
    _check_stopping(spec)
    _check_multi(spec)
    if spec.budget.parallel > spec.budget.max_trials:
        raise SpecError(
            f"budget.parallel: {spec.budget.parallel} is more than budget.max_trials "
            f"({spec.budget.max_trials})"
        )
    if len(spec.x0) > spec.budget.max_trials:
        raise SpecError(f"x0: {len(spec.x0)} points but budget.max_trials is {spec.budget.max_trials}")
    if strict:
        _check_new(spec)
    return spec


def _check_new(spec: Spec) -> None:
    """What a spec must satisfy to start or resume a study, but a stored snapshot need not to be
    read: kubetune refused less before, and a study's records must stay readable."""
    for i, dim in enumerate(spec.space):
        # Every parameter labels its trial's Job (kubectl get jobs -L kubetune.dev/NAME).
        problem = names.label_name_problem(dim.name)
        if problem:
            raise SpecError(f"space[{i}].name: {dim.name!r} {problem}")
    for where, metric in _metric_fields(spec):
        if metric in names.RESERVED:
            raise SpecError(f"{where}: {metric!r} is reserved "
                            f"(kubetune labels its trial Jobs {names.key(metric)})")  # fmt: skip
    seed = spec.kind.setting(spec.trial, spec.kind.seed)
    if isinstance(seed, int) and spec.confirm.top_k and seed + spec.confirm.seeds > SEED_MAX:
        raise SpecError(f"trial.seed: {seed} + confirm.seeds ({spec.confirm.seeds}) is past the largest "
                        f"seed, {SEED_MAX}")  # fmt: skip


def _metric_fields(spec: Spec) -> list[tuple[str, str]]:
    """(field, metric) of every objective and constraint, as the spec's YAML names them."""
    several = len(spec.objectives) > 1
    objectives = [(f"objectives[{i}].metric" if several else "objective.metric", o.metric)
                  for i, o in enumerate(spec.objectives)]  # fmt: skip
    return [*objectives, *((f"constraints[{i}].metric", c.metric) for i, c in enumerate(spec.constraints))]


def _check_multi(spec: Spec) -> None:
    """What several objectives or constraints need of the other sections: the search weighs them
    on Gaussian processes (kubetune/controller/search/multi.py), and a failure penalty or a
    stopping rule speaks of one metric."""
    if not spec.multi:
        return
    what = "several objectives" if len(spec.objectives) > 1 else "constraints"
    if spec.optimizer.base_estimator != "GP":
        raise SpecError(f"optimizer.base_estimator: {what} need GP, got {spec.optimizer.base_estimator}")
    if spec.constraints and spec.optimizer.acq_func != "EI":
        raise SpecError(f"optimizer.acq_func: constraints need EI (weighed by the probability of "
                        f"feasibility), got {spec.optimizer.acq_func}")  # fmt: skip
    if spec.budget.failure_penalty is not None:
        raise SpecError(f"budget.failure_penalty: a value of one metric; not told with {what}")
    if len(spec.objectives) > 1 and spec.stopping.rule != "none":
        raise SpecError(f"stopping.rule: {spec.stopping.rule} follows one metric; with several "
                        "objectives trials cannot be stopped early (use none)")  # fmt: skip


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
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > INT_MAX:
        raise SpecError(f"{where}: must be within ±2^53, got an integer of {len(str(abs(value)))} digits")
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


def _objectives(top: _Fields, kind: TrialKind) -> tuple[Objective, ...]:
    """``objective`` (one), or ``objectives`` (a list of them); the first is what trials report as
    their objective_value, so not a metric the controller measures."""
    items = top.get("objectives", list, None)
    single = top.section("objective")
    if items is None:
        objectives: tuple[Objective, ...] = (_objective(single, kind),)
    elif single.obj:
        raise SpecError("objectives: give objective or objectives, not both")
    elif not items:
        raise SpecError("objectives: must list at least one objective")
    else:
        objectives = tuple(
            _objective(_Fields(item, f"objectives[{i}]"), kind, default=False) for i, item in enumerate(items)
        )
    where = "objective" if items is None else "objectives[0]"
    if objectives[0].metric in MEASURED_METRICS:
        raise SpecError(f"{where}.metric: {objectives[0].metric!r} is measured by kubetune, not reported "
                        "by the trials; list it after an objective they report")  # fmt: skip
    for i, o in enumerate(objectives):
        if any(earlier.metric == o.metric for earlier in objectives[:i]):
            raise SpecError(f"objectives[{i}].metric: {o.metric!r} appears twice")
    return objectives


def _constraints(
    items: list[Any], kind: TrialKind, objectives: tuple[Objective, ...]
) -> tuple[Constraint, ...]:
    out: list[Constraint] = []
    for i, item in enumerate(items):
        f = _Fields(item, f"constraints[{i}]")
        metric = _metric(f, kind, None)
        if any(o.metric == metric for o in objectives):
            raise SpecError(f"{f.where('metric')}: {metric!r} is also an objective; a metric is "
                            "optimised or constrained, not both")  # fmt: skip
        if any(c.metric == metric for c in out):
            raise SpecError(f"{f.where('metric')}: {metric!r} is constrained twice; give max and min in one")
        high, low = f.get("max", float, None), f.get("min", float, None)
        f.done()
        if high is None and low is None:
            raise SpecError(f"constraints[{i}]: give max or min (a constraint without a bound holds always)")
        if high is not None and low is not None and low > high:
            raise SpecError(f"constraints[{i}].min: must be at most max ({low} > {high})")
        out.append(Constraint(metric, high, low))
    return tuple(out)


def _objective(f: _Fields, kind: TrialKind, default: bool = True) -> Objective:
    known = default and kind.metric_problem(Objective.metric) is None and kind.metrics
    metric = _metric(f, kind, Objective.metric if known else None)
    goal = f.get("goal", str, kind.goal_of(metric))
    if goal is None:
        raise SpecError(f"{f.where('goal')}: required for metric {metric!r} (maximize or minimize)")
    _choice(goal, ("maximize", "minimize"), f.where("goal"))
    f.done()
    return Objective(metric, goal)


def _metric(f: _Fields, kind: TrialKind, default: str | None) -> str:
    """The ``metric`` field: one the kind's trials report."""
    metric = f.get("metric", str, default)
    if metric is None:
        raise SpecError(f"{f.where('metric')}: required (the metric the trials report)")
    problem = kind.metric_problem(metric)
    if problem:
        raise SpecError(f"{f.where('metric')}: {problem}")
    return str(metric)


def _space(items: list[Any] | None, kind: TrialKind) -> tuple[Dimension, ...]:
    if items is None and kind.default_space:
        items = list(kind.default_space)
    if not items:
        raise SpecError("space: must list at least one parameter")
    dims = tuple(_dimension(item, f"space[{i}]", kind) for i, item in enumerate(items))
    for i, dim in enumerate(dims):
        if any(earlier.name == dim.name for earlier in dims[:i]):
            raise SpecError(f"space[{i}].name: {dim.name!r} appears twice")
    return dims


def _dimension(item: Any, path: str, kind: TrialKind) -> Dimension:
    f = _Fields(item, path)
    name = f.get("name", str, None)
    if name is None:
        raise SpecError(f"{path}.name: required")
    problem = kind.param_problem(name)
    if problem:
        raise SpecError(f"{path}.name: {problem}")
    dim_type = _choice(f.get("type", str, "") or "", ("real", "integer", "categorical"), f.where("type"))
    dim: Dimension
    if dim_type == "categorical":
        values = f.get("values", list, None)
        if not values:
            raise SpecError(f"{path}.values: a categorical needs at least one value")
        if len(values) > CATEGORIES_MAX:
            raise SpecError(f"{path}.values: at most {CATEGORIES_MAX} values, got {len(values)}")
        for i, v in enumerate(values):
            if not isinstance(v, (int, float, str)) or isinstance(v, bool):
                raise SpecError(f"{path}.values[{i}]: must be a number or a string, got {_kind(v)}")
            _typed(v, type(v), f"{path}.values[{i}]")  # finite, and an integer within bounds
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
        if not math.isfinite(high - low):
            raise SpecError(f"{path}: high - low must be a finite number ({high} - {low} overflows)")
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
