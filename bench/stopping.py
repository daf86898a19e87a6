"""6. Early stopping: trial-epochs and wall time to the best result, for none / median / ASHA.

Real learning curves, replayed, the way tabular benchmarks (LCBench) do: the
notebook's CNN is trained once per configuration for EPOCHS epochs on a
subset (the first TRAIN training images, validated on the last VAL), and
its validation accuracy after every epoch is cached in
bench/.cache/stopping-curves.json. A study is then replayed on a simulated
clock: PARALLEL workers, one epoch per time unit, the product's rules
(``kubetune.controller.stopping``) asked after every epoch exactly as the
controller asks them, a stopped trial giving its worker to the next at once.
Each seed draws TRIALS of the configurations in a random order, the same
draw for every rule, so the rules differ only in what they stop.

Measured per seed: the trial-epochs (GPU time) and the wall time (epochs of
the slowest worker) until the study has a finished trial within 1 % of the
best that the study without stopping finds, the trial-epochs until it has
that best itself, the trial-epochs of the whole study, and the best each
study ends with. Rerun one cell: ``python -m bench.stopping --rule asha --parallel 4``.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import CACHE, Context, Section, log, median, paired_ratio, table
from kubetune.contract import Params, Status, TrialResult
from kubetune.controller import optimizer
from kubetune.controller.stopping import AshaRule, Curves, MedianRule, NoStopping, StoppingRule
from kubetune.spec import OptimizerSettings, Spec

EPOCHS = 9
TRAIN, VAL = 6000, 2000
CONFIGS = 28
TRIALS = 20
SEEDS = tuple(range(12))
PARALLEL = (1, 4)
RULES: dict[str, StoppingRule] = {
    "none": NoStopping(),
    "median": MedianRule(grace_epochs=1, min_trials=3),
    "asha": AshaRule(min_epochs=1, eta=3, max_epochs=EPOCHS),
}
TARGET = 0.99  # of the best the study without stopping finds


# --- the curves, trained once ----------------------------------------------------------


def configurations(count: int, seed: int = 0) -> list[Params]:
    """Points spread over the notebook's space (log-uniform learning rate)."""
    rng = random.Random(seed)
    return [
        {
            "learning_rate": 10 ** rng.uniform(-5, -1),
            "num_dense_layers": rng.randint(1, 5),
            "num_dense_nodes": rng.randint(5, 512),
        }
        for _ in range(count)
    ]


def learning_curves(
    data_dir: Path, path: Path, configs: Sequence[Params], epochs: int, train: int, val: int
) -> list[list[float]]:
    """Validation accuracy after each epoch, per configuration; trained once, then read from ``path``."""
    key = f"train{train}-val{val}-epochs{epochs}-batch256"
    cache: dict[str, list[float]] = json.loads(path.read_text()) if path.exists() else {}
    out = []
    for i, params in enumerate(configs):
        name = json.dumps(
            [key, {k: round(v, 10) if isinstance(v, float) else v for k, v in sorted(params.items())}]
        )
        if name not in cache:
            log(f"stopping: training configuration {i + 1}/{len(configs)}")
            cache[name] = _train(data_dir, params, epochs, train, val)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(cache))
            os.replace(tmp, path)  # a killed run never leaves half a cache
        out.append(cache[name])
    return out


def _train(data_dir: Path, params: Params, epochs: int, train: int, val: int) -> list[float]:
    import keras
    import tensorflow as tf
    import tensorflow_datasets as tfds

    from kubetune.trial import model

    builder = tfds.builder("fashion_mnist", data_dir=str(data_dir))
    (x, y), (vx, vy) = (
        tfds.as_numpy(builder.as_dataset(split=s, batch_size=-1, as_supervised=True))
        for s in (f"train[:{train}]", f"train[{60000 - val}:]")
    )
    keras.backend.clear_session()
    gc.collect()
    keras.utils.set_random_seed(0)
    norm = lambda a, b: (tf.cast(a, tf.float32) / 255.0, b)  # noqa: E731
    data = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=0).batch(256).map(norm)
    held_out = tf.data.Dataset.from_tensor_slices((vx, vy)).batch(512).map(norm)
    net = model.build_model(params)
    history = net.fit(data, epochs=epochs, validation_data=held_out, verbose=0).history
    return [float(v) for v in history["val_accuracy"]]


# --- the replay ---------------------------------------------------------------------------


@dataclass
class Replay:
    """One study on the simulated clock: how it went, epoch by epoch."""

    best: float = float("-inf")
    epochs_used: int = 0
    wall: int = 0
    pruned: int = 0
    improved: list[tuple[int, int, float]] = field(default_factory=list)  # (wall, epochs used, best)

    def reached(self, goal: float) -> tuple[int, int] | None:
        """(wall time, trial-epochs) when the best first met ``goal``."""
        return next(((w, e) for w, e, b in self.improved if b >= goal), None)


# Which configuration trial i trains: given the trials' configurations so far and the
# curves of the completed and the stopped ones.
Chooser = Callable[
    [int, Mapping[int, int], Mapping[int, Sequence[float]], Mapping[int, Sequence[float]]], int
]


def replay(
    curves: Sequence[Sequence[float]], choose: Chooser, trials: int, rule: StoppingRule, parallel: int
) -> Replay:
    out = Replay()
    configs: dict[int, int] = {}  # trial index -> the configuration it trains
    running: dict[int, int] = {}  # trial index -> epochs done
    completed: dict[int, Sequence[float]] = {}
    stopped: dict[int, Sequence[float]] = {}

    def fill() -> None:
        while len(running) < parallel and len(configs) < trials:
            index = len(configs)
            configs[index] = choose(index, configs, completed, stopped)
            running[index] = 0

    fill()
    while running:
        out.wall += 1
        for i in running:
            running[i] += 1
            out.epochs_used += 1
        for i in sorted(running):
            curve = curves[configs[i]]
            done = running[i]
            if done == len(curve):
                del running[i]
                completed[i] = curve
                if curve[-1] > out.best:
                    out.best = curve[-1]
                    out.improved.append((out.wall, out.epochs_used, out.best))
                continue
            seen = Curves(
                running={j: curves[configs[j]][:d] for j, d in running.items()},
                completed=completed,
                stopped=stopped,
            )
            if rule.should_stop(i, seen) is not None:
                del running[i]
                stopped[i] = curve[:done]
                out.pruned += 1
        fill()
    return out


def in_order(order: Sequence[int]) -> Chooser:
    return lambda index, *_: order[index]


def gp_chooser(configs: Sequence[Params], seed: int, tell_pruned: bool) -> Chooser:
    """kubetune's own suggest(), its point snapped to the nearest configuration not trained yet;
    a stopped trial told its last value, or left out (``tell_pruned``)."""
    spec = Spec(optimizer=OptimizerSettings(random_state=seed, n_initial_points=5), x0=())

    def record(index: int, config: int, curve: Sequence[float], status: Status) -> TrialResult:
        value = curve[-1]
        return TrialResult(index=index, status=status, params=dict(configs[config]),
                           objective="val_accuracy", objective_value=value, metrics={"val_accuracy": value},
                           reason="stopped")  # fmt: skip

    def choose(index: int, chosen: Mapping[int, int], completed: Mapping[int, Sequence[float]],
               stopped: Mapping[int, Sequence[float]]) -> int:  # fmt: skip
        results = [record(i, chosen[i], c, "succeeded") for i, c in completed.items()]
        if tell_pruned:
            results += [record(i, chosen[i], c, "pruned") for i, c in stopped.items()]
        pending = [dict(configs[c]) for i, c in chosen.items() if i not in completed and i not in stopped]
        point = optimizer.suggest(spec, index, results, pending)
        free = [c for c in range(len(configs)) if c not in chosen.values()]
        return min(free, key=lambda c: _distance(point, configs[c]))

    return choose


def _distance(a: Params, b: Params) -> float:
    """In the space as the GP sees it: log learning rate, both integers scaled to [0, 1]."""
    lr = (math.log10(float(a["learning_rate"])) - math.log10(float(b["learning_rate"]))) / 4
    layers = (int(a["num_dense_layers"]) - int(b["num_dense_layers"])) / 4
    nodes = (int(a["num_dense_nodes"]) - int(b["num_dense_nodes"])) / 507
    return lr * lr + layers * layers + nodes * nodes


def draw(seed: int, configs: int, trials: int) -> list[int]:
    return random.Random(seed).sample(range(configs), trials)


def compare(
    curves: Sequence[Sequence[float]], seeds: Sequence[int], trials: int, parallel: int
) -> dict[str, list[dict[str, Any]]]:
    """Every rule on every seed's draw; per seed, the cost to reach 99 % of the no-stopping best."""
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in RULES}
    for seed in seeds:
        order = in_order(draw(seed, len(curves), trials))
        runs = {name: replay(curves, order, trials, rule, parallel) for name, rule in RULES.items()}
        goal, exact = TARGET * runs["none"].best, runs["none"].best
        for name, r in runs.items():
            hit, same = r.reached(goal), r.reached(exact)
            rows[name].append({"seed": seed, "best": r.best, "epochs": r.epochs_used, "wall": r.wall,
                               "pruned": r.pruned, "wall_to_goal": hit[0] if hit else None,
                               "epochs_to_goal": hit[1] if hit else None,
                               "epochs_to_best": same[1] if same else None})  # fmt: skip
    return rows


def told_or_ignored(configs: Sequence[Params], curves: Sequence[Sequence[float]], seeds: Sequence[int],
                    trials: int) -> dict[str, list[dict[str, Any]]]:  # fmt: skip
    """kubetune's GP choosing the configurations, ASHA stopping them, pruned trials told or left out."""
    asha = RULES["asha"]
    rows: dict[str, list[dict[str, Any]]] = {"told": [], "ignored": [], "no stopping": []}
    for seed in seeds:
        runs = {
            "told": replay(curves, gp_chooser(configs, seed, True), trials, asha, 1),
            "ignored": replay(curves, gp_chooser(configs, seed, False), trials, asha, 1),
            "no stopping": replay(curves, gp_chooser(configs, seed, False), trials, RULES["none"], 1),
        }
        for name, r in runs.items():
            rows[name].append({"seed": seed, "best": r.best, "epochs": r.epochs_used})
    return rows


# --- the section ------------------------------------------------------------------------


def run(ctx: Context) -> Section:
    from bench.throughput import prepared_data_dir

    smoke = ctx.smoke
    epochs, train, val = (3, 512, 256) if smoke else (EPOCHS, TRAIN, VAL)
    configs = configurations(4 if smoke else CONFIGS)
    path = (ctx.work if smoke else CACHE) / "stopping-curves.json"
    curves = learning_curves(prepared_data_dir(ctx), path, configs, epochs, train, val)
    seeds, trials = ((0, 1), 3) if smoke else (SEEDS, TRIALS)
    results = {p: compare(curves, seeds, trials, p) for p in PARALLEL}
    told = told_or_ignored(configs, curves, seeds, trials)
    return _section(results, told, curves, seeds, trials)


def _section(results: dict[int, dict[str, list[dict[str, Any]]]], told: dict[str, list[dict[str, Any]]],
             curves: Sequence[Sequence[float]], seeds: Sequence[int], trials: int) -> Section:  # fmt: skip
    s = Section("stopping", "6. Early stopping: GPU time to the best result")
    finals = sorted(c[-1] for c in curves)
    s.add(
        f"{len(curves)} configurations of the notebook's space, each trained once for {len(curves[0])} "
        f"epochs on {TRAIN} images and validated after every epoch on {VAL} held-out ones (final validation "
        f"accuracy {finals[0]:.3f} to {finals[-1]:.3f}, median {median(finals):.3f}); {len(seeds)} seeds, "
        f"each a study of {trials} of them in a random order, replayed with each rule. median: grace 1 "
        "epoch, 3 completed trials; asha: rungs at 1 and 3 epochs, eta 3. Cost until the study holds a "
        f"trial within 1 % of the best the study without stopping finds; ratios are medians of the "
        "per-seed ratios to no stopping (lower is better).",
    )
    for parallel, rows in results.items():
        body = []
        for name, per_seed in rows.items():
            base = {r["seed"]: r for r in rows["none"]}
            hits = [r for r in per_seed if r["epochs_to_goal"] is not None]
            ratio_e = median([r["epochs_to_goal"] / base[r["seed"]]["epochs_to_goal"] for r in hits])
            ratio_w = median([r["wall_to_goal"] / base[r["seed"]]["wall_to_goal"] for r in hits])
            best = [r["best"] for r in per_seed]
            found = [r for r in per_seed if r["epochs_to_best"] is not None]
            ratio_b = median([r["epochs_to_best"] / base[r["seed"]]["epochs_to_best"] for r in found])
            body.append([
                name,
                f"{len(hits)}/{len(per_seed)}",
                median([r["epochs_to_goal"] for r in hits]),
                ratio_e,
                median([r["wall_to_goal"] for r in hits]),
                ratio_w,
                f"{len(found)}/{len(per_seed)}",
                ratio_b,
                median([r["epochs"] for r in per_seed]),
                paired_ratio([r["epochs"] for r in per_seed], [base[r["seed"]]["epochs"] for r in per_seed]),
                median([r["pruned"] for r in per_seed]),
                f"{median(best):.4f} ({min(best):.4f}-{max(best):.4f})",
            ])  # fmt: skip
        s.add(
            f"Parallel {parallel}:",
            table(["rule", "seeds within 1 %", "trial-epochs to it", "vs none", "wall (epochs) to it",
                   "vs none", "seeds finding none's best", "trial-epochs to it vs none",
                   "trial-epochs, whole study", "vs none", "trials stopped", "final best (min-max)"], body),
        )  # fmt: skip
    told_rows = [[name, median([r["best"] for r in per]), f"{min(r['best'] for r in per):.4f}",
                  median([r["epochs"] for r in per])] for name, per in told.items()]  # fmt: skip
    s.add(
        "What the GP is told of a stopped trial: kubetune's own `suggest()` picks each configuration (its "
        "point snapped to the nearest one not trained yet), ASHA stops them, parallel 1, same seeds:",
        table(["stopped trials", "median final best", "worst seed", "trial-epochs"], told_rows),
    )
    s.data = {"results": {str(p): r for p, r in results.items()}, "told": told}
    return s


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.stopping", description=__doc__.splitlines()[0])
    p.add_argument("--rule", choices=sorted(RULES), default="asha")
    p.add_argument("--parallel", type=int, default=4)
    p.add_argument("--seeds", type=int, default=len(SEEDS))
    ns = p.parse_args(argv)
    path = CACHE / "stopping-curves.json"
    from bench.throughput import prepared_data_dir

    curves = learning_curves(prepared_data_dir(Context(smoke=False, work=CACHE / "work")), path,
                             configurations(CONFIGS), EPOCHS, TRAIN, VAL)  # fmt: skip
    rows = compare(curves, range(ns.seeds), TRIALS, ns.parallel)
    for row in rows[ns.rule]:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
