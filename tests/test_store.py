"""The store contract against each backend: the local folder, and GCS through fake-gcs-server."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubetune.store import GCSStore, LocalStore, Store, StoreError, open_store
from kubetune.testing.store import StoreContract
from tests.gcs_emulator import FakeGCS


class TestLocalStore(StoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Store:
        store = open_store(str(tmp_path / "store"))
        assert isinstance(store, LocalStore)
        return store


class TestGCSStore(StoreContract):
    @pytest.fixture
    def store(self, bucket: str) -> Store:
        store = open_store(f"gs://{bucket}/studies/one")
        assert isinstance(store, GCSStore)
        return store


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
