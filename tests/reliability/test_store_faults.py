"""Store faults, through a fault-injecting HTTP proxy in front of fake-gcs-server.

The official google-cloud-storage client talks to the proxy as it would to
GCS (STORAGE_EMULATOR_HOST), so what is tested is kubetune's retry policy
(kubetune/store/_gcs.py: the client's DEFAULT_RETRY with a 60 s deadline) meeting
real 5xx answers, TCP resets and stalled answers. Transient faults are retried
with backoff and jitter; permanent ones fail fast with one line; a second
writer of a record is refused by the generation precondition and nothing is
overwritten.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kubetune.contract import EXIT_ALREADY_RECORDED, TrialResult, result_object
from kubetune.store import GCSStore, Store, open_store
from tests.gcs_emulator import FakeGCS
from tests.reliability.checks import (
    KUBETUNE,
    assert_consistent,
    fake_cli,
    fake_cli_env,
    named,
    run,
)
from tests.reliability.faultproxy import (
    LOST_RESPONSE,
    RESET,
    Before,
    Fault,
    FaultProxy,
    Request,
    Stall,
    Status,
    every,
    first,
)

# A stalled answer times out after READ_TIMEOUT_S instead of the product's 60 s:
# the retry is the product's, only the wait is shortened.
READ_TIMEOUT_S = 1.0
TRANSIENT: dict[str, Fault] = {
    "503": Status(503),
    "500": Status(500),
    "429": Status(429),
    "reset": RESET,
    "timeout": Stall(READ_TIMEOUT_S + 2),
}
Op = Callable[[Store], object]
OPS: dict[str, tuple[Op, Callable[[Request], bool]]] = {
    "create": (lambda s: s.create("trials/000000/result.json", b"{}"), lambda r: r.is_upload),
    "put": (lambda s: s.put("best.json", b"{}"), lambda r: r.is_upload),
    "get": (lambda s: s.get("study.yaml"), lambda r: r.path.startswith("/download/")),
    "list": (lambda s: s.list("trials/"), lambda r: r.path.endswith("/o")),
}


Opener = Callable[[str], Store]


@pytest.fixture
def proxied(
    gcs: FakeGCS, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[FaultProxy, Opener]]:
    """A proxy in front of the emulator, and a way to open stores (in this process) through it."""
    monkeypatch.setattr(GCSStore, "TIMEOUT", (5.0, READ_TIMEOUT_S))
    with FaultProxy(gcs.host) as proxy:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.host)
        yield proxy, lambda prefix: open_store(f"gs://{bucket}/{prefix}")


@pytest.mark.parametrize("fault", list(TRANSIENT), ids=list(TRANSIENT))
def test_a_transient_fault_is_retried_for_every_operation(
    proxied: tuple[FaultProxy, Opener], fault: str
) -> None:
    proxy, opener = proxied
    store = opener(f"transient-{fault}")
    store.put("study.yaml", b"name: x\n")
    for name, (op, when) in OPS.items():
        proxy.plan = first(1, TRANSIENT[fault], when)
        start = len(proxy.seen)
        op(store)
        attempts = [s for s in proxy.seen[start:] if when(s.request)]
        assert [s.fault for s in attempts] == [TRANSIENT[fault], None], name  # failed once, then retried
    assert store.get("trials/000000/result.json") == b"{}"


def test_retries_back_off_exponentially_with_jitter(
    proxied: tuple[FaultProxy, Opener],
) -> None:
    proxy, opener = proxied
    store = opener("backoff")
    waits = []
    for name in ("a.json", "b.json"):
        proxy.plan = first(3, Status(503), lambda r: r.is_upload)
        start = len(proxy.seen)
        store.create(name, b"{}")
        times = [s.request.at for s in proxy.seen[start:] if s.request.is_upload]
        assert len(times) == 4  # three 503s, then the write
        waits.append([b - a for a, b in itertools.pairwise(times)])
    # google-api-core's truncated exponential backoff with full jitter: the k-th
    # wait is drawn from [0, 1 s * 2^k], and two clients failing alike do not retry in step.
    for series in waits:
        assert all(w <= 2**k + 0.5 for k, w in enumerate(series)), series
    assert max(abs(a - b) for a, b in zip(*waits, strict=True)) > 0.01, waits
    assert (GCSStore.RETRY._initial, GCSStore.RETRY._multiplier, GCSStore.RETRY._timeout) == (
        1.0,
        2.0,
        60.0,
    )


def test_a_write_whose_answer_was_lost_is_not_taken_for_a_second_writer(
    proxied: tuple[FaultProxy, Opener],
) -> None:
    # The upload lands, the connection drops before its answer: the retry meets
    # its own object (412). That is our record, not someone else's.
    proxy, opener = proxied
    store = opener("lost")
    proxy.plan = first(1, LOST_RESPONSE, lambda r: r.is_upload)
    store.create("trials/000003/params.json", b'{"index": 3}')
    uploads = [s for s in proxy.seen if s.request.is_upload]
    assert [(s.fault, s.upstream_status) for s in uploads] == [(LOST_RESPONSE, 200), (None, 412)]
    assert store.get("trials/000003/params.json") == b'{"index": 3}'


@pytest.mark.parametrize("case", ["403", "missing-bucket"])
def test_a_permanent_fault_fails_at_once_with_one_line(
    gcs: FakeGCS, bucket: str, tmp_path: Path, case: str
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: perm\n")
    plan = first(1000, Status(403, "kubetune@p.iam.gserviceaccount.com does not have storage.objects.list"))
    target = f"gs://{bucket}/perm" if case == "403" else "gs://kubetune-no-such-bucket/perm"
    with FaultProxy(gcs.host, plan if case == "403" else lambda _r: None) as proxy:
        started = time.monotonic()
        env = {**os.environ, "STORAGE_EMULATOR_HOST": proxy.host}
        out = run([KUBETUNE, "run", str(spec), "--store", target], env)
        elapsed = time.monotonic() - started
    assert out.returncode == 1
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr, out.stderr
    if case == "403":
        assert out.stderr.startswith(f"kubetune: store {target}: permission denied (HTTP 403: ")
    else:
        assert out.stderr == f"kubetune: store {target}: bucket 'kubetune-no-such-bucket' does not exist\n"
    asked = [(s.request.method, s.request.path) for s in proxy.seen]
    assert len(asked) == len(set(asked)) <= 2, asked  # nothing retried
    assert elapsed < 10


@pytest.mark.slow
def test_a_second_writer_of_a_record_is_refused_and_nothing_is_overwritten(
    gcs: FakeGCS, bucket: str, prepared_data_dir: Path
) -> None:
    # A real trial trains; just before its record reaches the bucket, another
    # run of the same trial writes first. Its upload must fail the generation
    # precondition, be logged, and leave the other record as it was.
    prefix = "second"
    theirs = TrialResult(
        0, "succeeded", {"learning_rate": 0.01}, "val_accuracy", 0.5, metrics={"val_accuracy": 0.5}
    )
    direct = open_store(f"gs://{bucket}/{prefix}")  # straight to the emulator, not through the proxy
    assert isinstance(direct, GCSStore)
    generations: list[int] = []

    def other_writer() -> None:
        direct.create(result_object(0), theirs.to_json())
        generations.append(generation(direct, result_object(0)))

    plan = first(
        1, Before(other_writer), lambda r: r.is_upload and r.object_name == f"{prefix}/{result_object(0)}"
    )
    with FaultProxy(gcs.host, plan) as proxy:
        out = run(
            [KUBETUNE, "trial", "--store", f"gs://{bucket}/{prefix}", "--study", "s", "--index", "0",
             "--objective", "val_accuracy", "--params", json.dumps({"learning_rate": 0.003}),
             "--epochs", "1", "--train-subset", "512", "--test-subset", "256", "--batch-size", "256"],
            {**os.environ, "STORAGE_EMULATOR_HOST": proxy.host, "KUBETUNE_DATA_DIR": str(prepared_data_dir),
             "KUBETUNE_LOG_FORMAT": "json"},
        )  # fmt: skip
    assert out.returncode == EXIT_ALREADY_RECORDED, out.stderr[-3000:]
    [refused] = named(out.stderr, "already recorded by another run; result discarded")
    assert refused["level"] == "warning" and refused["object"] == result_object(0)
    # The trial's epoch record went up too; its result's one upload was refused.
    result_name = f"{prefix}/{result_object(0)}"
    [upload] = [s for s in proxy.seen if s.request.is_upload and s.request.object_name == result_name]
    assert upload.upstream_status == 412  # refused by if_generation_match=0
    assert direct.get(result_object(0)) == theirs.to_json()
    assert generation(direct, result_object(0)) == generations[0]  # never replaced


def generation(store: GCSStore, name: str) -> int:
    blob = store.bucket.get_blob(store.prefix + name)
    assert blob is not None and blob.generation is not None
    return int(blob.generation)


@pytest.mark.slow
def test_a_study_completes_through_a_flaky_store(
    gcs: FakeGCS, bucket: str, shim: Path, tmp_path: Path
) -> None:
    # Controller and trials alike: a 503 every 9th request, a reset every 13th,
    # a lost answer every 17th.
    faults: dict[int, Fault] = {9: Status(503), 13: RESET, 17: LOST_RESPONSE}
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "name: flaky\noptimizer: {n_initial_points: 3, random_state: 0}\n"
        "budget: {max_trials: 6, parallel: 2, max_failed: 1}\ntrial: {epochs: 1}\n"
    )
    store = f"gs://{bucket}/flaky"
    with FaultProxy(gcs.host, every(faults)) as proxy:
        env = fake_cli_env(shim, {"default": {"sleep": 0.2}}, STORAGE_EMULATOR_HOST=proxy.host)
        out = run(fake_cli("run", str(spec), "--store", store), env)
        injected = [s.fault for s in proxy.seen if s.fault is not None]
    assert out.returncode == 0, out.stderr[-3000:]
    assert {repr(f) for f in injected} >= {repr(f) for f in faults.values()}
    assert_consistent(open_store(store), 6)  # no trial lost, none failed, none twice
