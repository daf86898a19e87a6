"""What every store owes the study: write-once records, atomic views, sorted listings."""

from __future__ import annotations

import threading

import pytest

from kubetune.store import AlreadyExists, NotFound, Store, open_store


class StoreContract:
    """Subclass with a ``store`` fixture that yields an empty store of one backend."""

    def test_create_then_get(self, store: Store) -> None:
        store.create("trials/000001/result.json", b'{"a": 1}')
        assert store.get("trials/000001/result.json") == b'{"a": 1}'

    def test_create_refuses_second_write_and_keeps_the_first(self, store: Store) -> None:
        store.create("trials/000002/result.json", b"first")
        with pytest.raises(AlreadyExists, match="already written"):
            store.create("trials/000002/result.json", b"second")
        assert store.get("trials/000002/result.json") == b"first"

    def test_racing_creates_have_exactly_one_winner(self, store: Store) -> None:
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

    def test_put_overwrites(self, store: Store) -> None:
        store.put("best.json", b"1")
        store.put("best.json", b"2")
        assert store.get("best.json") == b"2"

    def test_get_missing_raises_not_found(self, store: Store) -> None:
        with pytest.raises(NotFound, match=r"nope\.json"):
            store.get("nope.json")

    def test_list_is_sorted_and_filtered_by_prefix(self, store: Store) -> None:
        for name in ["trials/000010/a", "trials/000002/b", "best.json", "trials/000002/a"]:
            store.put(name, b"x")
        assert store.list("trials/") == ["trials/000002/a", "trials/000002/b", "trials/000010/a"]
        assert store.list() == ["best.json", *store.list("trials/")]

    def test_binary_round_trip(self, store: Store) -> None:
        data = bytes(range(256)) * 1000
        store.put("dataset/shard-0", data)
        assert store.get("dataset/shard-0") == data

    def test_uri_reopens_the_same_store(self, store: Store) -> None:
        store.create("study.yaml", b"name: x\n")
        assert open_store(store.uri).get("study.yaml") == b"name: x\n"

    def test_create_of_identical_bytes_is_a_retry_that_succeeds(self, store: Store) -> None:
        # A retried write whose first attempt landed meets its own object.
        store.create("trials/000003/result.json", b"same")
        store.create("trials/000003/result.json", b"same")
        assert store.get("trials/000003/result.json") == b"same"
        with pytest.raises(AlreadyExists):
            store.create("trials/000003/result.json", b"other")
