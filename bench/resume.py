"""Section 9: a controller restart at scale, against fake-gcs-server.

A study of 1,000 finished trials of 10 epochs each sits in a bucket; a
controller starts and reads it back: the spec, every trial's records, then
the optimizer's next point. Measured in a process of its own each time (its
peak RSS is the reader's alone): objects read, listings, seconds, peak
memory. Two shapes of the same study:

* 1.0 records: results without their learning curve, as trial images
  before record schema 1.1 wrote them; the curve is read from the epoch
  records (what every restart did before);
* 1.1 records: the curve is in the result; a finished trial's epochs are
  never read.

Run: ``.venv/bin/python -m bench resume`` (about 5 minutes on 2 cores; the
smoke run uses 20 trials).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from bench.common import PYTHON, REPO, Context, Section, log, median, table

TRIALS, EPOCHS, ROUNDS = 1000, 10, 3
SMOKE_TRIALS = 20
HEADER = ["records", "objects in the bucket", "objects read", "listings", "read (s)", "first ask (s)",
          "peak RSS (MB)"]  # fmt: skip
SPEC = """
name: resume
objective: {metric: val_accuracy}
budget: {max_trials: %(total)d, parallel: 8}
trial: {epochs: %(epochs)d}
"""


def run(ctx: Context) -> Section:
    from tests.cluster.fixtures import build_binaries
    from tests.gcs_emulator import FakeGCS

    trials = SMOKE_TRIALS if ctx.smoke else TRIALS
    rounds = 1 if ctx.smoke else ROUNDS
    section = Section("resume", "9. A controller restart at scale")
    with FakeGCS(build_binaries() / "fake-gcs-server", ctx.work / "resume-gcs") as gcs:
        env = {**os.environ, "STORAGE_EMULATOR_HOST": gcs.host}
        rows, data = [], {}
        for shape in ("1.0", "1.1"):
            gcs.create_bucket(bucket := f"resume-{shape.replace('.', '-')}")
            uri = f"gs://{bucket}/study"
            took = _populate(uri, env, trials, shape)
            log(f"resume: {trials} trials in {shape} records written in {took:.0f} s")
            runs = [_measure(uri, env) for _ in range(rounds)]
            data[shape] = runs
            rows.append([shape, runs[0]["objects"], runs[0]["gets"], runs[0]["lists"],
                         median([r["read_s"] for r in runs]), median([r["ask_s"] for r in runs]),
                         median([r["peak_rss_mb"] for r in runs])])  # fmt: skip
    section.data = {"trials": trials, "epochs": EPOCHS, "runs": data}
    section.add(
        f"A study of {trials} finished trials of {EPOCHS} epochs in fake-gcs-server (the official client, "
        "on loopback); a controller process starts, reads it back (`read_study`: spec, launch and result "
        "records, and what else it needs) and asks the optimizer for trial "
        f"{trials}'s point. Medians of {rounds} runs, each in a fresh process (its peak RSS is the "
        "reader's).",
        table(HEADER, rows),
        "1.0 records are results without their learning curve, as trial images before record schema 1.1 "
        "wrote them: the reader takes the curve from the epoch records, as every restart did before. 1.1 "
        "results carry it, so a finished trial costs its launch and its result: two reads, whatever its "
        "epochs. The reads go out eight at a time (`controller/history.py`); the first ask fits the GP on "
        "the subset of FIT_MAX trials, as at any point of a long study.",
    )
    return section


def _populate(uri: str, env: dict[str, str], trials: int, shape: str) -> float:
    """Write the study's records (in a child process: the emulator's environment is its own)."""
    t0 = time.monotonic()
    subprocess.run([PYTHON, "-m", "bench.resume", "populate", uri, str(trials), shape], env=env, cwd=REPO,
                   check=True)  # fmt: skip
    return time.monotonic() - t0


def _measure(uri: str, env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run([PYTHON, "-m", "bench.resume", "measure", uri], env=env, cwd=REPO, check=True,
                         capture_output=True, text=True)  # fmt: skip
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def populate(uri: str, trials: int, shape: str) -> None:
    from skopt.space import Space

    from kubetune.contract import (
        SPEC_OBJECT,
        EpochRecord,
        LaunchRecord,
        TrialResult,
        epoch_object,
        params_object,
        result_object,
    )
    from kubetune.controller.search.space import point, skopt_dimensions
    from kubetune.spec import parse_spec
    from kubetune.store import open_store
    from tests.fake_trial import curve, objective

    store = open_store(uri)
    spec = parse_spec(SPEC % {"total": trials + 1, "epochs": EPOCHS})
    store.create(SPEC_OBJECT, spec.to_yaml().encode())
    rows = Space(skopt_dimensions(spec)).rvs(trials, random_state=0)

    def write(index: int) -> None:
        params = point(spec, rows[index])
        store.create(params_object(index), LaunchRecord(index, params, 0.0, "bench").to_json())
        values = [curve(params, e, EPOCHS) for e in range(1, EPOCHS + 1)]
        for epoch, value in enumerate(values, 1):
            store.create(epoch_object(index, epoch),
                         EpochRecord(index, epoch, {"val_accuracy": value}, 0.0).to_json())  # fmt: skip
        final = objective(params)
        result = TrialResult(index=index, status="succeeded", params=spec.full_params(params),
                             objective="val_accuracy", objective_value=final, metrics={"val_accuracy": final},
                             last_epoch=EPOCHS, wall_time_s=60.0)  # fmt: skip
        if shape == "1.1":
            result = replace(result, epoch_metrics=[{"val_accuracy": v} for v in values])
        data = result.to_json()
        if shape == "1.0":  # as a 1.0 trial image wrote it: no curve, no attempt, schema 1
            doc = json.loads(data)
            doc.pop("epoch_metrics"), doc.pop("attempt")
            data = json.dumps({**doc, "schema": 1}).encode()
        store.create(result_object(index), data)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(write, range(trials)))


def measure(uri: str) -> dict[str, Any]:
    """Read the study as a restarted controller does; what it cost."""
    from kubetune.controller import optimizer
    from kubetune.controller.history import read_study
    from kubetune.store import open_store

    store = open_store(uri, create=False)
    counting = _Counting(store)
    t0 = time.monotonic()
    spec, history = read_study(counting)
    read_s = time.monotonic() - t0
    t0 = time.monotonic()
    optimizer.suggest(spec, history.searched, history.ordered_results(), [])
    ask_s = time.monotonic() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"objects": len(store.list()), "gets": counting.gets, "lists": counting.lists, "read_s": read_s,
            "ask_s": ask_s, "peak_rss_mb": peak_mb}  # fmt: skip


class _Counting:
    """A store that counts the calls made to it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.uri = inner.uri
        self.gets = self.lists = 0

    def get(self, name: str) -> bytes:
        self.gets += 1
        data: bytes = self.inner.get(name)
        return data

    def list(self, prefix: str = "") -> list[str]:
        self.lists += 1
        names: list[str] = self.inner.list(prefix)
        return names

    def create(self, name: str, data: bytes) -> None:
        self.inner.create(name, data)

    def put(self, name: str, data: bytes) -> None:
        self.inner.put(name, data)


if __name__ == "__main__":
    if sys.argv[1] == "populate":
        populate(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        print(json.dumps(measure(sys.argv[2])))
