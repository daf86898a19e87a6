"""Where a study lives: one small interface, a local folder or a GCS bucket behind it.

The store is the source of truth. Trials write their records to it once; the
controller rebuilds everything else (optimizer, leaderboard) from it on start.
``open_store`` picks the backend from the URI: ``gs://bucket/prefix`` or a
local path (plain or ``file://``), the embedded default.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kubetune.store._base import AlreadyExists, NotFound, Store, StoreError, Unreadable
from kubetune.store._local import LocalStore


def open_store(uri: str, *, create: bool = True) -> Store:
    """Open the store a URI names and check that it is usable.

    ``create`` makes a missing local folder (a bucket is never created).
    """
    if uri.startswith("gs://"):
        # Imported here: the GCS client takes 1.9 s to import; a local study needs none of it.
        from kubetune.store._gcs import GCSStore

        return GCSStore.open(uri)
    if "://" in uri and not uri.startswith("file://"):
        scheme = uri.split("://", 1)[0]
        raise StoreError(f"store: unsupported URI scheme {scheme!r} (use a folder or gs://bucket/prefix)")
    return LocalStore.open(uri.removeprefix("file://"), create=create)


if TYPE_CHECKING:
    from kubetune.store._gcs import GCSStore


def __getattr__(name: str) -> type:
    # GCSStore, exported without importing the GCS client (1.9 s) up front.
    if name == "GCSStore":
        from kubetune.store._gcs import GCSStore

        return GCSStore
    raise AttributeError(name)


__all__ = ["AlreadyExists", "GCSStore", "LocalStore", "NotFound", "Store", "StoreError", "Unreadable",
           "open_store"]  # fmt: skip
