"""The study spec: defaults reproduce the notebook; every bad input names its field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from kubetune.errors import SpecError
from kubetune.kinds import CnnSettings
from kubetune.spec import Categorical, Confirm, Integer, Real, Spec, load_spec, parse_spec


def test_empty_spec_is_the_notebook() -> None:
    spec = parse_spec("")
    assert spec == Spec()
    assert spec.space == (
        Real("learning_rate", 1e-5, 1e-1, "log-uniform"),
        Integer("num_dense_layers", 1, 5),
        Integer("num_dense_nodes", 5, 512),
    )
    assert spec.optimizer.acq_func == "EI"
    assert spec.budget.max_trials == 60
    assert spec.x0 == ({"learning_rate": 0.001, "num_dense_layers": 1, "num_dense_nodes": 12},)
    assert isinstance(spec.trial, CnnSettings)
    assert (spec.trial.epochs, spec.trial.batch_size) == (3, 512)
    assert spec.objective.metric == "val_accuracy" and spec.objective.goal == "maximize"


def test_full_spec_round_trips_through_its_canonical_yaml() -> None:
    text = textwrap.dedent(
        """
        name: small
        objective: {metric: val_loss}
        space:
          - {name: learning_rate, type: real, low: 1e-4, high: 1e-2, prior: log-uniform}
          - {name: num_dense_nodes, type: categorical, values: [16, 64, 256]}
        optimizer: {acq_func: LCB, n_initial_points: 3, random_state: 7, initial_point_generator: lhs}
        budget: {max_trials: 8, parallel: 2, max_failed: 2, failure_penalty: 5}
        x0: [{learning_rate: 0.001, num_dense_nodes: 64}]
        trial: {epochs: 1, train_subset: 2048, test_subset: 512, validation_split: 0.2, seed: 3,
                precision: mixed_bfloat16}
        """
    )
    spec = parse_spec(text)
    assert spec.objective.goal == "minimize"  # val_loss is minimized unless told otherwise
    assert spec.space[0] == Real("learning_rate", 1e-4, 1e-2, "log-uniform")  # "1e-4" read as a number
    assert spec.space[1] == Categorical("num_dense_nodes", (16, 64, 256))
    assert spec.budget.failure_penalty == 5.0
    assert isinstance(spec.trial, CnnSettings)
    assert spec.trial.precision == "mixed_bfloat16"
    assert parse_spec(spec.to_yaml()) == spec
    assert spec.full_params({"learning_rate": 0.01})["num_dense_layers"] == 1


def test_confirmation_is_off_unless_asked_for_and_round_trips() -> None:
    assert parse_spec("").confirm == Confirm(top_k=0, seeds=3)
    spec = parse_spec("confirm: {top_k: 2}")
    assert spec.confirm == Confirm(top_k=2, seeds=3)
    assert parse_spec(spec.to_yaml()) == spec


def test_a_custom_space_drops_the_notebook_x0() -> None:
    spec = parse_spec("space: [{name: num_dense_layers, type: integer, low: 1, high: 2}]")
    assert spec.x0 == ()


def test_load_spec_reads_a_file(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text("name: from-file\n")
    assert load_spec(tmp_path / "s.yaml").name == "from-file"
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path / "missing.yaml")


LR = "{name: learning_rate, type: real, low: 0.001, high: 0.1}"

BAD = [
    (
        "space: [{name: learning_rate, type: real, low: 0.1, high: 0.01}]",
        r"space\[0\]\.low: must be less than high",
    ),
    (
        "space: [{name: learning_rate, type: real, low: 0.1, high: 0.1}]",
        r"space\[0\]\.low: must be less than high",
    ),
    (
        "space: [{name: learning_rate, type: real, low: 1, high: 2, prior: gaussian}]",
        r"space\[0\]\.prior: must be one of",
    ),
    (
        "space: [{name: learning_rate, type: real, low: 0, high: 2, prior: log-uniform}]",
        r"space\[0\]\.low: a log-uniform prior needs low > 0",
    ),
    ("space: []", r"space: must list at least one parameter"),
    (
        "space: [{name: momentum, type: real, low: 0, high: 1}]",
        r"space\[0\]\.name: unknown hyperparameter 'momentum'",
    ),
    (
        "space: [{name: num_dense_layers, type: integer, low: 1.5, high: 3}]",
        r"space\[0\]\.low: must be an integer",
    ),
    ("space: [{name: num_dense_layers, type: integr, low: 1, high: 3}]", r"space\[0\]\.type: must be one of"),
    (
        "space: [{name: num_dense_nodes, type: categorical, values: []}]",
        r"space\[0\]\.values: a categorical needs",
    ),
    (f"space: [{LR}, {LR}]", r"space\[1\]\.name: 'learning_rate' appears twice"),
    ("space: [{type: real, low: 0, high: 1}]", r"space\[0\]\.name: required"),
    ("budget: {parallel: 0}", r"budget\.parallel: must be at least 1, got 0"),
    ("budget: {parallel: -2}", r"budget\.parallel: must be at least 1, got -2"),
    ("budget: {max_trials: 2, parallel: 3}", r"budget\.parallel: 3 is more than budget\.max_trials \(2\)"),
    ("budget: {max_trials: 0}", r"budget\.max_trials: must be at least 1"),
    ("budget: {paralel: 2}", r"budget\.paralel: unknown field \(did you mean 'parallel'\?\)"),
    ("budget: {max_trials: ten}", r"budget\.max_trials: must be an integer, got a string 'ten'"),
    ("budget: {max_trials: true}", r"budget\.max_trials: must be an integer, got a boolean"),
    ("budget: [1, 2]", r"budget: must be a mapping, got a list"),
    (
        "x0: [{learning_rate: 5.0, num_dense_layers: 1, num_dense_nodes: 12}]",
        r"x0\[0\]\.learning_rate: 5\.0 is outside",
    ),
    ("x0: [{learning_rate: 0.001, num_dense_layers: 1}]", r"x0\[0\]\.num_dense_nodes: required"),
    (
        "x0: [{learning_rate: 0.001, num_dense_layers: 1, num_dense_nodes: 12, extra: 1}]",
        r"x0\[0\]\.extra: unknown field",
    ),
    (
        "x0: [{learning_rate: 0.001, num_dense_layers: one, num_dense_nodes: 12}]",
        r"x0\[0\]\.num_dense_layers: must be an integer",
    ),
    ("objective: {metric: f1}", r"objective\.metric: must be one of"),
    ("objective: {metric: val_accuracy, goal: up}", r"objective\.goal: must be one of"),
    ("optimizer: {acq_func: UCB}", r"optimizer\.acq_func: must be one of"),
    ("optimizer: {base_estimator: XGB}", r"optimizer\.base_estimator: must be one of"),
    ("optimizer: {n_initial_points: -1}", r"optimizer\.n_initial_points: must be at least 0"),
    ("name: Fashion_MNIST", r"name: 'Fashion_MNIST' is not DNS-safe"),
    ("name: -leading-dash", r"name: '-leading-dash' is not DNS-safe"),
    (f"name: {'a' * 41}", r"name: at most 40 characters"),
    ("trial: {validation_split: 1.5}", r"trial\.validation_split: must be between 0 and 1"),
    (
        "trial: {precision: float16}",
        r"trial\.precision: must be one of float32, mixed_float16, mixed_bfloat16; got 'float16'",
    ),
    ("trial: {epochs: 0}", r"trial\.epochs: must be at least 1"),
    ("trial: {batch_size: 1.0e+3}", r"trial\.batch_size: must be an integer"),
    ("trial: {epochs: .nan}", r"trial\.epochs: must be an integer"),
    ("budget: {failure_penalty: .inf}", r"budget\.failure_penalty: must be a finite number"),
    ("nmae: x", r"nmae: unknown field \(did you mean 'name'\?\)"),
    ("name: [unclosed", r"spec: malformed YAML at line 1"),
    ("- just\n- a list", r"spec: must be a mapping, got a list"),
    (
        "budget:\n  max_trials: 1\nx0:\n  - {learning_rate: 0.001, num_dense_layers: 1, num_dense_nodes: 12}\n"
        "  - {learning_rate: 0.002, num_dense_layers: 1, num_dense_nodes: 12}",
        r"x0: 2 points but budget\.max_trials is 1",
    ),
]


# The CNN's newer knobs: categorical strings are checked against what the model takes.
BAD += [
    (
        "space: [{name: optimizer, type: categorical, values: [adam, lbfgs]}]",
        r"space\[0\]\.values\[1\]: must be one of adam, sgd, rmsprop; got 'lbfgs'",
    ),
    (
        "space: [{name: dropout, type: real, low: 0, high: 1}]",
        r"space\[0\]: dropout must be within \[0, 0\.99\]",
    ),
    (
        "space: [{name: kernel_size, type: categorical, values: [3, x]}]",
        r"space\[0\]: kernel_size must be within",
    ),
]

PROGRAM = "trial: {kind: program, command: 'python3 train.py --x {x}'}\n"
X = "space: [{name: x, type: real, low: 0, high: 1}]\n"
GOAL = "objective: {metric: score, goal: minimize}\n"

# Program studies: free-form names, but usable as environment variables, no clash, known placeholders.
BAD += [
    ("trial: {kind: jax}", r"trial\.kind: must be one of cnn, program; got 'jax'"),
    (PROGRAM + GOAL, r"space: must list at least one parameter"),
    (PROGRAM + X, r"objective\.metric: required \(the metric the trials report\)"),
    (PROGRAM + X + "objective: {metric: score}", r"objective\.goal: required for metric 'score'"),
    (
        PROGRAM + X + "objective: {metric: 'f 1', goal: maximize}",
        r"objective\.metric: 'f 1' is not a metric name",
    ),
    (
        "trial: {kind: program, command: 'train --lr {lr}'}\n" + X + GOAL,
        r"trial\.command: placeholder \{lr\} names no space parameter; known: x, trial_index, metrics_file",
    ),
    (
        "trial: {kind: program, command: 'train {x'}\n" + X + GOAL,
        r"trial\.command: '\{x': expected '}' before end",
    ),
    ("trial: {kind: program}\n" + X + GOAL, r"trial\.command: required \(the program each trial runs\)"),
    ("trial: {kind: program, command: 'a \"b'}\n" + X + GOAL, r"trial\.command: cannot split like a shell"),
    (
        PROGRAM
        + GOAL
        + "space: [{name: x, type: real, low: 0, high: 1}, {name: X, type: integer, low: 0, high: 1}]",
        r"space\[1\]\.name: 'X' clashes with 'x' \(environment variable X\)",
    ),
    (
        PROGRAM + GOAL + "space: [{name: 2x, type: real, low: 0, high: 1}]",
        r"space\[0\]\.name: '2x' is not usable as an environment variable",
    ),
    (
        PROGRAM + GOAL + "space: [{name: path, type: real, low: 0, high: 1}]",
        r"space\[0\]\.name: 'path' is reserved",
    ),
    (
        PROGRAM + GOAL + "space: [{name: metrics_file, type: real, low: 0, high: 1}]",
        r"space\[0\]\.name: 'metrics_file' is reserved",
    ),
    ("trial: {kind: program, command: x, epochs: 3}\n" + X + GOAL, r"trial\.epochs: unknown field"),
]

# The confirmation phase.
BAD += [
    ("confirm: {top_k: -1}", r"confirm\.top_k: must be at least 0, got -1"),
    ("confirm: {top_k: 2, seeds: 0}", r"confirm\.seeds: must be at least 1, got 0"),
    ("confirm: {top_k: two}", r"confirm\.top_k: must be an integer, got a string 'two'"),
    ("confirm: {top: 2}", r"confirm\.top: unknown field \(did you mean 'top_k'\?\)"),
    ("confirm: 3", r"confirm: must be a mapping, got an integer"),
]


# Names kubetune's own Job labels use, and names no label can carry (issue: a parameter named
# `study` took the trial's Job out of the controller's watch, which relaunched it).
BAD += [
    (
        PROGRAM.replace("{x}", "{study}") + GOAL + "space: [{name: study, type: real, low: 0, high: 1}]",
        r"space\[0\]\.name: 'study' is reserved \(kubetune labels its trial Jobs kubetune\.dev/study\)",
    ),
    (
        PROGRAM.replace("{x}", "{attempt}")
        + GOAL
        + "space: [{name: attempt, type: integer, low: 0, high: 1}]",
        r"space\[0\]\.name: 'attempt' is reserved",
    ),
    (
        PROGRAM.replace("{x}", "{lr_}") + GOAL + "space: [{name: lr_, type: real, low: 0, high: 1}]",
        r"space\[0\]\.name: 'lr_' is not a label name",
    ),
    (
        PROGRAM.replace("{x}", "{" + "a" * 64 + "}")
        + GOAL
        + f"space: [{{name: {'a' * 64}, type: real, low: 0, high: 1}}]",
        r"space\[0\]\.name: 'a+' is 64 characters long; a label name holds at most 63",
    ),
    (PROGRAM + X + "objective: {metric: status, goal: maximize}", r"objective\.metric: 'status' is reserved"),
    (PROGRAM + X + "objective: {metric: epoch, goal: maximize}", r"objective\.metric: 'epoch' is reserved"),
]

# Bounded numbers: what numpy and skopt accept, and nothing that costs without end.
BAD += [
    (
        "budget:\n  max_trials: 5\n  max_trials: 6",
        r"spec: malformed YAML at line 3: key 'max_trials' appears twice",
    ),
    ("name: a\nname: b", r"spec: malformed YAML at line 2: key 'name' appears twice"),
    ("optimizer: {n_initial_points: 1000000}", r"optimizer\.n_initial_points: must be at most 10000"),
    ("optimizer: {random_state: 4294967296}", r"optimizer\.random_state: must be at most 4294967295"),
    ("trial: {seed: 4294967296}", r"trial\.seed: must be at most 4294967295"),
    (
        "trial: {seed: 4294967295}\nconfirm: {top_k: 1}",
        r"trial\.seed: 4294967295 \+ confirm\.seeds \(3\) is past",
    ),
    (
        "budget: {max_trials: 100000000000000000000}",
        r"budget\.max_trials: must be within ±2\^53, got an integer of 21",
    ),
    (
        "space: [{name: num_dense_nodes, type: integer, low: 1, high: 10000000000000000000000}]",
        r"space\[0\]\.high: must be within ±2\^53",
    ),
    (
        "space: [{name: learning_rate, type: real, low: -1.0e+308, high: 1.0e+308}]",
        r"space\[0\]: high - low must be a finite number",
    ),
    (
        "space: [{name: num_dense_nodes, type: categorical, values: [1, .inf]}]",
        r"space\[0\]\.values\[1\]: must be a finite number",
    ),
    (
        PROGRAM
        + GOAL
        + "space: [{name: x, type: categorical, values: ["
        + ", ".join(map(str, range(1001)))
        + "]}]",
        r"space\[0\]\.values: at most 1000 values, got 1001",
    ),
    ("budget: {max_trials: " + "9" * 5000 + "}", r"spec: malformed YAML: Exceeds the limit"),
    ("a: " + "[" * 10000, r"spec: malformed YAML"),
]


# Several objectives and constraints (issue 25): each bad combination named by its field.
TWO = "objectives: [{metric: val_accuracy}, {metric: param_count}]\n"
BAD += [
    (
        "objectives: [{metric: val_accuracy}, {metric: f1}]",
        r"objectives\[1\]\.metric: must be one of val_accuracy, .*, wall_time_s, gpu_seconds; got 'f1'",
    ),
    (
        "objectives: [{metric: val_accuracy}, {metric: val_accuracy, goal: minimize}]",
        r"objectives\[1\]\.metric: 'val_accuracy' appears twice",
    ),
    ("objectives: [{goal: maximize}]", r"objectives\[0\]\.metric: required"),
    ("objectives: []", r"objectives: must list at least one objective"),
    ("objective: {metric: val_loss}\n" + TWO, r"objectives: give objective or objectives, not both"),
    ("objective: {metric: gpu_seconds}", r"objective\.metric: 'gpu_seconds' is measured by kubetune"),
    (
        "objectives: [{metric: wall_time_s}, {metric: val_loss}]",
        r"objectives\[0\]\.metric: 'wall_time_s' is measured by kubetune",
    ),
    (
        TWO + "constraints: [{metric: param_count, max: 10000}]",
        r"constraints\[0\]\.metric: 'param_count' is also an objective",
    ),
    ("constraints: [{metric: param_count}]", r"constraints\[0\]: give max or min"),
    (
        "constraints: [{metric: param_count, max: 1, min: 2}]",
        r"constraints\[0\]\.min: must be at most max \(2\.0 > 1\.0\)",
    ),
    (
        "constraints: [{metric: param_count, max: 9}, {metric: param_count, min: 1}]",
        r"constraints\[1\]\.metric: 'param_count' is constrained twice",
    ),
    ("constraints: [{metric: f1, max: 1}]", r"constraints\[0\]\.metric: must be one of"),
    ("constraints: [{metric: param_count, max: ten}]", r"constraints\[0\]\.max: must be a number"),
    (
        "constraints: [{metric: param_count, maximum: 1}]",
        r"constraints\[0\]\.maximum: unknown field \(did you mean 'max'\?\)",
    ),
    (TWO + "stopping: {rule: median}", r"stopping\.rule: median follows one metric; with several objectives"),
    (
        TWO + "optimizer: {base_estimator: RF}",
        r"optimizer\.base_estimator: several objectives need GP, got RF",
    ),
    (
        "constraints: [{metric: param_count, max: 9}]\noptimizer: {acq_func: LCB}",
        r"optimizer\.acq_func: constraints need EI",
    ),
    (TWO + "budget: {failure_penalty: 0}", r"budget\.failure_penalty: a value of one metric"),
    (
        PROGRAM + X + "objectives: [{metric: score, goal: minimize}, {metric: status, goal: maximize}]",
        r"objectives\[1\]\.metric: 'status' is reserved",
    ),
]


def test_several_objectives_and_constraints_round_trip() -> None:
    spec = parse_spec(
        TWO + "constraints: [{metric: gpu_seconds, max: 600}, {metric: val_loss, min: 0.1, max: 2}]"
    )
    assert [(o.metric, o.goal) for o in spec.objectives] == [
        ("val_accuracy", "maximize"),
        ("param_count", "minimize"),
    ]
    assert spec.objective == spec.objectives[0] and spec.multi
    assert spec.constraints[1].holds(1.0) and not spec.constraints[1].holds(0.05)
    assert spec.measured == {"gpu_seconds"}
    assert parse_spec(spec.to_yaml()) == spec
    assert "objective" not in spec.to_dict() and spec.to_dict()["constraints"][0] == {
        "metric": "gpu_seconds",
        "max": 600.0,
    }


def test_one_objective_writes_the_snapshot_it_always_wrote() -> None:
    spec = parse_spec("objectives: [{metric: val_loss}]")
    assert spec == parse_spec("objective: {metric: val_loss}") and not spec.multi
    assert list(spec.to_dict())[:3] == ["name", "objective", "space"]


def test_a_program_may_optimise_two_of_its_own_metrics_and_a_measured_one() -> None:
    spec = parse_spec(
        PROGRAM
        + X
        + "objectives: [{metric: score, goal: minimize}, {metric: size, goal: minimize}, {metric: wall_time_s}]"
    )
    assert [o.goal for o in spec.objectives] == ["minimize", "minimize", "minimize"]


def test_a_stored_snapshot_is_read_with_the_rules_it_was_written_under() -> None:
    # A study started before a rule existed must stay readable (status, best, report).
    old = PROGRAM.replace("{x}", "{study}") + GOAL + "space: [{name: study, type: real, low: 0, high: 1}]"
    with pytest.raises(SpecError, match=r"space\[0\]\.name: 'study'"):
        parse_spec(old)
    assert parse_spec(old, strict=False).space[0].name == "study"


@pytest.mark.parametrize(("text", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_spec_names_the_field(text: str, message: str) -> None:
    with pytest.raises(SpecError, match=message) as info:
        parse_spec(text)
    assert "\n" not in str(info.value)


def test_a_program_study_round_trips_and_keeps_its_kind() -> None:
    spec = parse_spec(PROGRAM + GOAL + "space: [{name: x, type: real, low: 0, high: 1},"
                      " {name: mode, type: categorical, values: [fast, slow]}]")  # fmt: skip
    assert spec.kind.name == "program"
    assert spec.space[1] == Categorical("mode", ("fast", "slow"))  # strings, as written
    assert spec.x0 == ()  # the notebook's warm start is the CNN's
    assert spec.to_dict()["trial"] == {
        "kind": "program",
        "command": "python3 train.py --x {x}",
        "image": None,
    }
    assert parse_spec(spec.to_yaml()) == spec
    assert spec.full_params({"x": 0.5, "mode": "fast"}) == {"x": 0.5, "mode": "fast"}


def test_a_known_metric_needs_no_goal_in_a_program_study() -> None:
    spec = parse_spec(PROGRAM + X + "objective: {metric: val_loss}")
    assert spec.objective.goal == "minimize"


def test_a_cnn_snapshot_names_no_kind() -> None:
    # An existing CNN study's stored study.yaml has no trial.kind: a resume must compare equal.
    assert "kind" not in Spec().to_dict()["trial"]
    assert parse_spec("trial: {kind: cnn}") == Spec()


def test_cnn_knobs_default_to_the_notebook_and_to_the_settings() -> None:
    spec = parse_spec("trial: {epochs: 1, batch_size: 256}")
    params = spec.full_params({"optimizer": "sgd"})
    assert params["optimizer"] == "sgd"
    assert (params["epochs"], params["batch_size"]) == (1, 256)  # unsearched: the settings' values
    assert (params["dropout"], params["conv1_filters"], params["conv2_filters"], params["kernel_size"]) == (
        0.0, 32, 64, 3,
    )  # fmt: skip
    searched = spec.kind.settings_with(spec.trial, {"epochs": 5, "learning_rate": 0.1})
    assert (searched.epochs, searched.batch_size) == (5, 256)
