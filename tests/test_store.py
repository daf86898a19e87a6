"""One contract, every backend: the local folder and GCS (through fake-gcs-server)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from kubetune.store import AlreadyExists, NotFound, Store, StoreError, open_store
from tests.gcs_emulator import FakeGCS


@pytest.fixture(params=["local", "gcs"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "local":
        return open_store(str(tmp_path / "store"))
    bucket = request.getfixturevalue("bucket")
    return open_store(f"gs://{bucket}/studies/one")


def test_create_then_get(store: Store) -> None:
    store.create("trials/000001/result.json", b'{"a": 1}')
    assert store.get("trials/000001/result.json") == b'{"a": 1}'


def test_create_refuses_second_write_and_keeps_the_first(store: Store) -> None:
    store.create("trials/000002/result.json", b"first")
    with pytest.raises(AlreadyExists, match="already written"):
        store.create("trials/000002/result.json", b"second")
    assert store.get("trials/000002/result.json") == b"first"


def test_racing_creates_have_exactly_one_winner(store: Store) -> None:
    wins: list[bytes] = []
    barrier = threading.Barrier(4)

    def writer(data: bytes) -> None:
        barrier.wait()
        try:
            store.create("race.json", data)
            wins.append(data)
        except AlreadyExists:
            pass

    threads = [threading.Thread(target=writer, args=(f"w{i}".encode(),)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    assert store.get("race.json") == wins[0]


def test_put_overwrites(store: Store) -> None:
    store.put("best.json", b"1")
    store.put("best.json", b"2")
    assert store.get("best.json") == b"2"


def test_get_missing_raises_not_found(store: Store) -> None:
    with pytest.raises(NotFound, match=r"nope\.json"):
        store.get("nope.json")


def test_list_is_sorted_and_filtered_by_prefix(store: Store) -> None:
    for name in ["trials/000010/a", "trials/000002/b", "best.json", "trials/000002/a"]:
        store.put(name, b"x")
    assert store.list("trials/") == ["trials/000002/a", "trials/000002/b", "trials/000010/a"]
    assert store.list() == ["best.json", *store.list("trials/")]


def test_binary_round_trip(store: Store) -> None:
    data = bytes(range(256)) * 1000
    store.put("dataset/shard-0", data)
    assert store.get("dataset/shard-0") == data


def test_uri_reopens_the_same_store(store: Store) -> None:
    store.create("study.yaml", b"name: x\n")
    assert open_store(store.uri).get("study.yaml") == b"name: x\n"


# --- backend-specific failures: one line, no traceback material ---------------


def test_local_store_under_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="cannot write"):
        open_store(str(tmp_path / "file" / "store"))


def test_local_names_cannot_escape_the_root(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "s"))
    with pytest.raises(StoreError, match="escapes"):
        store.put("../outside", b"x")
    assert not (tmp_path / "outside").exists()


def test_missing_bucket_fails_fast(gcs: FakeGCS) -> None:
    with pytest.raises(StoreError, match="bucket 'no-such-bucket' does not exist"):
        open_store("gs://no-such-bucket/x")


@pytest.mark.parametrize("uri", ["s3://bucket/x", "gs://"])
def test_bad_uris(uri: str) -> None:
    with pytest.raises(StoreError):
        open_store(uri)


def test_file_uri_is_a_local_folder(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}/s")
    store.put("a", b"1")
    assert (tmp_path / "s" / "a").read_bytes() == b"1"
