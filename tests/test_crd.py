"""The Study CRD: generated from the spec's declarations, structural, and committed as generated.

These hold the file to its generator and to the shape apiextensions.k8s.io/v1
requires; a real apiserver's verdict (the schema accepted, the CEL rules
compiled within their cost, a change of spec.space refused) needs a cluster.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from kubetune import crd
from kubetune.kinds import BUILT_IN, CnnSettings
from kubetune.settings import setting, settings_of
from kubetune.spec import RESUMABLE_CHANGES, TOP_FIELDS
from tests import REPO

CRD_FILE = REPO / "charts" / "kubetune" / "crds" / "study.yaml"
Schema = dict[str, Any]


@pytest.fixture(scope="module")
def committed() -> Schema:
    doc: Schema = yaml.safe_load(CRD_FILE.read_text())
    return doc


def schema(doc: Schema) -> Schema:
    [version] = doc["spec"]["versions"]
    root: Schema = version["schema"]["openAPIV3Schema"]
    return root


def test_the_committed_crd_is_a_fresh_generation() -> None:
    assert CRD_FILE.read_text() == crd.render(), "run `make crd`"


def test_names_scope_and_status_subresource(committed: Schema) -> None:
    spec = committed["spec"]
    assert committed["metadata"]["name"] == "studies.kubetune.dev"
    assert spec["group"] == "kubetune.dev" and spec["scope"] == "Namespaced"
    assert spec["names"] == {"kind": "Study", "listKind": "StudyList", "plural": "studies",
                             "singular": "study", "shortNames": ["kts"]}  # fmt: skip
    [version] = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns == {"Phase": ".status.phase", "Trials": ".status.progress",
                       "Running": ".status.trials.running", "Best": ".status.best.value",
                       "GPU-H": ".status.gpuHours", "Age": ".metadata.creationTimestamp"}  # fmt: skip


def nodes(node: Schema, path: str = "") -> Iterator[tuple[str, Schema]]:
    """Every schema node, with its path."""
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from nodes(child, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            yield from nodes(node[key], f"{path}[]")


# What a structural schema may not say (apiextensions.k8s.io/v1), or a CRD cannot.
FORBIDDEN = {"if", "then", "else", "const", "$ref", "allOf", "anyOf", "oneOf", "not", "default"}


def test_the_schema_is_structural(committed: Schema) -> None:
    for path, node in nodes(schema(committed)):
        assert not FORBIDDEN & set(node), path
        assert isinstance(node.get("type"), str) or node.get("x-kubernetes-preserve-unknown-fields"), path
        assert "additionalProperties" not in node or "properties" not in node, path
        assert node.get("additionalProperties") is not False, path


def test_unknown_fields_are_kept_only_where_a_value_is_a_number_or_a_string(committed: Schema) -> None:
    root = schema(committed)
    kept = [path for path, node in nodes(root) if node.get("x-kubernetes-preserve-unknown-fields")]
    assert kept == [".spec.space[]", ".spec.x0[]", ".status.best.params"]


def test_the_spec_is_the_study_spec_less_its_name(committed: Schema) -> None:
    spec = schema(committed)["properties"]["spec"]
    assert list(spec["properties"]) == [k for k in TOP_FIELDS if k != "name"]


@pytest.mark.parametrize("section", list(crd.SECTIONS))
def test_sections_are_the_declared_settings(committed: Schema, section: str) -> None:
    props = schema(committed)["properties"]["spec"]["properties"][section]["properties"]
    declared = settings_of(crd.SECTIONS[section])
    assert list(props) == [s.name for s in declared]
    for s in declared:
        node = props[s.name]
        assert node.get("nullable", False) == s.optional, s.name
        assert node.get("enum") == (list(s.rule.choices) if s.rule.choices else None), s.name
        assert node.get("minimum") == (s.rule.between[0] if s.rule.between else s.rule.minimum), s.name


def test_a_between_rule_is_an_open_interval() -> None:
    [split] = [s for s in settings_of(CnnSettings) if s.name == "validation_split"]
    assert crd.setting_schema(split) == {"type": "number", "minimum": 0.0, "exclusiveMinimum": True,
                                         "maximum": 1.0, "exclusiveMaximum": True,
                                         "description": split.rule.help}  # fmt: skip


def test_the_trial_section_holds_every_built_in_kinds_settings(committed: Schema) -> None:
    trial = schema(committed)["properties"]["spec"]["properties"]["trial"]["properties"]
    assert trial.pop("kind")["enum"] == ["cnn", "program"]
    assert set(trial) == {s.name for k in BUILT_IN for s in settings_of(k.settings_type)}


def test_a_setting_two_kinds_declare_differently_is_refused() -> None:
    @dataclass(frozen=True)
    class A:
        epochs: int = setting(1, minimum=1)

    @dataclass(frozen=True)
    class B:
        epochs: int = setting(1, minimum=2)

    with pytest.raises(ValueError, match=r"B\.epochs"):
        crd.section_schema([A, B])


def test_only_budget_and_confirm_may_change(committed: Schema) -> None:
    rules = schema(committed)["properties"]["spec"]["x-kubernetes-validations"]
    guarded = [r["message"].split(" ")[0] for r in rules]
    assert guarded == [f"spec.{f}" for f in TOP_FIELDS if f != "name" and f not in RESUMABLE_CHANGES]
    for rule in rules:
        field = rule["message"].split(" ")[0].removeprefix("spec.")
        assert rule["rule"] == (f"has(self.{field}) == has(oldSelf.{field}) && "
                                f"(!has(self.{field}) || self.{field} == oldSelf.{field})")  # fmt: skip
        assert "only spec.budget and spec.confirm may change" in rule["message"]


def test_the_status_says_phase_counts_best_winner_and_budget(committed: Schema) -> None:
    status = schema(committed)["properties"]["status"]["properties"]
    assert status["phase"]["enum"] == ["Pending", "Running", "Confirming", "Completed", "Failed"]
    assert set(status) == {
        "phase", "observedGeneration", "conditions", "progress", "trials", "confirmation", "best", "winner",
        "gpuHours", "maxGpuHours", "endedBy", "store", "report", "paretoFront",
    }  # fmt: skip
    conditions = status["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert set(conditions["items"]["properties"]) == {
        "type",
        "status",
        "reason",
        "message",
        "lastTransitionTime",
        "observedGeneration",
    }
    assert set(status["trials"]["properties"]) == {
        "total",
        "finished",
        "succeeded",
        "failed",
        "pruned",
        "running",
        "queued",
        "lostAttempts",
    }
    assert set(status["best"]["properties"]) == {"index", "value", "params"}
    assert set(status["winner"]["properties"]) == {"index", "n", "mean", "sd", "min", "max"}
