"""The Study custom resource (``kubetune.dev/v1alpha1``): a study as a Kubernetes object with live status.

``python -m kubetune.crd`` prints charts/kubetune/crds/study.yaml (``make crd``;
tests/test_crd.py holds the committed file to a fresh generation). Its spec
schema is built from the declarations the spec parser reads
(:func:`kubetune.settings.settings_of`), as values.schema.json's study section
is held to them, so the three cannot disagree on a field, type or bound.

The schema is structural, as apiextensions.k8s.io/v1 requires: one type per
node (null as ``nullable``), no ``if``/``then``; unknown fields are pruned.
Cross-field rules are CEL. The parser stays the judge of a spec (a kind's
hyperparameters and metrics, a seed's range); the schema refuses early what
it can say simply. No defaults: the parser's depend on the trial kind, and a
default written into the stored object would outlive a change of it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import yaml

from kubetune import names
from kubetune.kinds import BUILT_IN, TrialKind
from kubetune.kinds.program import PARAM_NAME_RE
from kubetune.settings import Setting, settings_of
from kubetune.spec import (
    NAME_MAX,
    NAME_RE,
    PRIORS,
    RESUMABLE_CHANGES,
    TOP_FIELDS,
    Budget,
    Confirm,
    OptimizerSettings,
    Stopping,
)

GROUP = names.GROUP
VERSION = "v1alpha1"
KIND = "Study"
PLURAL = "studies"
SINGULAR = "study"
SHORT_NAMES = ["kts"]
PHASES = ("Pending", "Running", "Confirming", "Completed", "Failed")
# Why no more search trials start: the budget that ended the search.
ENDED_BY = ("budget.max_trials", "budget.max_failed", "budget.max_gpu_hours", "budget.max_hours")
# The spec's fields but its name: a Study's name is its metadata.name.
SPEC_FIELDS = tuple(f for f in TOP_FIELDS if f != "name")
IMMUTABLE = tuple(f for f in SPEC_FIELDS if f not in RESUMABLE_CHANGES)
SECTIONS: dict[str, type] = {
    "optimizer": OptimizerSettings,
    "budget": Budget,
    "stopping": Stopping,
    "confirm": Confirm,
}

Schema = dict[str, Any]

HEADER = """\
# The Study custom resource (kubetune.dev/v1alpha1). Generated: do not edit here;
# edit kubetune/spec.py or kubetune/crd.py and run
#   make crd
# (tests/test_crd.py fails when this file and the generator drift apart).
# Helm installs it before the chart's templates, and never upgrades or deletes it.
"""


def setting_schema(s: Setting) -> Schema:
    """The OpenAPI schema of one declared setting: its type, null if allowed, bounds and help."""
    out: Schema
    if s.yaml_kind is list:
        out = {"type": "array", "items": {"type": "string", "minLength": 1}}
    elif s.rule.choices is not None:
        out = {"type": "string", "enum": list(s.rule.choices)}
    else:
        out = {"type": {int: "integer", float: "number", str: "string"}[s.kind]}
    if s.optional:
        out["nullable"] = True
    if s.rule.minimum is not None:
        out["minimum"] = s.rule.minimum
    if s.rule.maximum is not None:
        out["maximum"] = s.rule.maximum
    if s.rule.between is not None:
        low, high = s.rule.between
        out |= {"minimum": low, "exclusiveMinimum": True, "maximum": high, "exclusiveMaximum": True}
    if s.rule.help:
        out["description"] = s.rule.help
    return out


def section_schema(classes: Sequence[type]) -> Schema:
    """An object of the settings the classes declare; a name two of them declare must agree."""
    props: Schema = {}
    for cls in classes:
        for s in settings_of(cls):
            schema = setting_schema(s)
            if props.setdefault(s.name, schema) != schema:
                raise ValueError(f"{cls.__name__}.{s.name}: declared otherwise by another kind")
    return {"type": "object", "properties": props}


def trial_schema(kinds: Sequence[TrialKind]) -> Schema:
    """Every kind's settings, and which kind (the default's when left out)."""
    kind = {"type": "string", "enum": [k.name for k in kinds], "description": "what the trials train"}
    section = section_schema([k.settings_type for k in kinds])
    return {**section, "properties": {"kind": kind, **section["properties"]}}


def space_schema() -> Schema:
    """A dimension keeps its fields unpruned: a categorical's values are numbers or strings, which no
    OpenAPI type says (CEL cannot see an untyped field, so none is declared; the parser checks them)."""
    dimension = {
        "type": "object",
        "required": ["name", "type"],
        "properties": {
            "name": {"type": "string", "pattern": PARAM_NAME_RE.pattern, "maxLength": names.LABEL_NAME_MAX},
            "type": {"type": "string", "enum": ["real", "integer", "categorical"]},
            "low": {"type": "number"},
            "high": {"type": "number"},
            "prior": {"type": "string", "enum": list(PRIORS)},
        },
        "x-kubernetes-preserve-unknown-fields": True,
        "x-kubernetes-validations": [
            {"rule": "self.type == 'categorical' || has(self.low) && has(self.high)",
             "message": "a real or an integer needs low and high"},
            {"rule": "!has(self.low) || !has(self.high) || self.low < self.high",
             "message": "low must be less than high"},
        ],
    }  # fmt: skip
    return {
        "type": "array",
        "minItems": 1,
        "items": dimension,
        "description": "the parameters searched; a categorical's values: a list of numbers or strings",
    }


def x0_schema() -> Schema:
    # A point's values are numbers or strings, by parameter name: an object left unpruned.
    point = {"type": "object", "minProperties": 1, "x-kubernetes-preserve-unknown-fields": True}
    return {"type": "array", "items": point, "description": "points trained first, before the optimizer's"}


def objective_schema() -> Schema:
    return {
        "type": "object",
        "properties": {
            "metric": {"type": "string", "minLength": 1, "description": "what the trials report"},
            "goal": {"type": "string", "enum": ["maximize", "minimize"],
                     "description": "left out: the metric's own direction"},
        },
    }  # fmt: skip


def objectives_schema() -> Schema:
    item = {**objective_schema(), "required": ["metric"]}
    why = "several objectives (instead of objective): the search looks for their Pareto front"
    return {"type": "array", "minItems": 1, "items": item, "description": why}


def constraints_schema() -> Schema:
    bound = {"type": "number"}
    constraint = {
        "type": "object",
        "required": ["metric"],
        "properties": {"metric": {"type": "string", "minLength": 1}, "max": bound, "min": bound},
        "x-kubernetes-validations": [
            {"rule": "has(self.max) || has(self.min)", "message": "give max or min"}
        ],
    }
    return {"type": "array", "items": constraint,
            "description": "metrics a feasible trial keeps within max and/or min"}  # fmt: skip


def immutable_rules() -> list[Schema]:
    """One transition rule per field a resume may not change: whole sub-objects compared, so the
    cost stays one comparison of what was stored (set or left out alike)."""
    changeable = " and ".join(f"spec.{f}" for f in RESUMABLE_CHANGES)
    return [
        {
            "rule": f"has(self.{f}) == has(oldSelf.{f}) && (!has(self.{f}) || self.{f} == oldSelf.{f})",
            "message": f"spec.{f} is immutable: only {changeable} may change on a study",
        }
        for f in IMMUTABLE
    ]


def spec_schema(kinds: Sequence[TrialKind] = BUILT_IN) -> Schema:
    props: Schema = {
        "objective": objective_schema(),
        "objectives": objectives_schema(),
        "constraints": constraints_schema(),
        "space": space_schema(),
        **{name: section_schema([cls]) for name, cls in SECTIONS.items()},
        "x0": x0_schema(),
        "trial": trial_schema(kinds),
    }
    return {
        "type": "object",
        "description": "the study spec (kubetune/spec.py), less its name: the Study's own",
        "properties": {f: props[f] for f in SPEC_FIELDS},
        "x-kubernetes-validations": immutable_rules(),
    }


TRIAL_COUNTS = ("total", "finished", "succeeded", "failed", "pruned", "running", "queued", "lostAttempts")


def _counts(description: str, *fields: str) -> Schema:
    return {
        "type": "object",
        "description": description,
        "properties": {f: {"type": "integer", "minimum": 0} for f in fields},
    }


def condition_schema() -> Schema:
    """metav1.Condition."""
    return {
        "type": "object",
        "required": ["type", "status", "lastTransitionTime", "reason", "message"],
        "properties": {
            "type": {"type": "string", "maxLength": 316},
            "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
            "observedGeneration": {"type": "integer", "format": "int64", "minimum": 0},
            "lastTransitionTime": {"type": "string", "format": "date-time"},
            "reason": {"type": "string", "maxLength": 1024},
            "message": {"type": "string", "maxLength": 32768},
        },
    }


def status_schema() -> Schema:
    """What the controller derives from the store's records (kubetune.controller.resource)."""
    number = {"type": "number"}
    return {
        "type": "object",
        "properties": {
            "phase": {"type": "string", "enum": list(PHASES)},
            "observedGeneration": {"type": "integer", "format": "int64", "minimum": 0},
            "conditions": {
                "type": "array",
                "items": condition_schema(),
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
            },
            "progress": {"type": "string", "description": "search trials finished/budget.max_trials"},
            "trials": _counts("search trials", *TRIAL_COUNTS),
            "confirmation": _counts("confirmation runs", "finished", "total"),
            "best": {
                "type": "object",
                "description": "the best search trial",
                "properties": {
                    "index": {"type": "integer", "minimum": 0},
                    "value": number,
                    # A kind's parameters: its names, numbers or strings.
                    "params": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                },
            },
            "winner": {
                "type": "object",
                "description": "the confirmation phase's winner, over its runs",
                "properties": {
                    "index": {"type": "integer", "minimum": 0},
                    "n": {"type": "integer", "minimum": 0},
                    **{k: {**number, "nullable": True} for k in ("mean", "sd", "min", "max")},
                },
            },
            "gpuHours": number,
            "maxGpuHours": number,
            "endedBy": {"type": "string", "enum": list(ENDED_BY)},
            "store": {"type": "string", "description": "the store: the records, the truth"},
            "report": {"type": "string", "description": "the report's object"},
            "paretoFront": {
                "type": "array",
                "items": {"type": "integer", "minimum": 0},
                "description": "several objectives or constraints: the Pareto front's trials",
            },
        },
    }


def name_rules() -> list[Schema]:
    """The study's name prefixes its trial Jobs' names: a DNS label, short (kubetune.spec)."""
    return [
        {"rule": f"size(self.metadata.name) <= {NAME_MAX}",
         "message": f"a study's name is at most {NAME_MAX} characters (it prefixes Job names)"},
        {"rule": f"self.metadata.name.matches('{NAME_RE.pattern}')",
         "message": "a study's name is a DNS label: lower-case letters, digits and '-'"},
    ]  # fmt: skip


PRINTER_COLUMNS = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Trials", "type": "string", "jsonPath": ".status.progress"},
    {"name": "Running", "type": "integer", "jsonPath": ".status.trials.running"},
    {"name": "Best", "type": "number", "jsonPath": ".status.best.value"},
    {"name": "GPU-H", "type": "number", "jsonPath": ".status.gpuHours"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def study_crd(kinds: Sequence[TrialKind] = BUILT_IN) -> Schema:
    """The CustomResourceDefinition, for the built-in kinds (a plugin kind's settings would be pruned)."""
    schema = {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec_schema(kinds),
            "status": status_schema(),
        },
        "x-kubernetes-validations": name_rules(),
    }
    version = {
        "name": VERSION,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": schema},
        "subresources": {"status": {}},
        "additionalPrinterColumns": PRINTER_COLUMNS,
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {"kind": KIND, "listKind": f"{KIND}List", "plural": PLURAL, "singular": SINGULAR,
                      "shortNames": SHORT_NAMES},
            "scope": "Namespaced",
            "versions": [version],
        },
    }  # fmt: skip


def render() -> str:
    return HEADER + yaml.safe_dump(study_crd(), sort_keys=False, width=110)


if __name__ == "__main__":
    sys.stdout.write(render())
