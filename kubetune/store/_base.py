"""The store interface and its errors, which every backend shares."""

from __future__ import annotations

from typing import Protocol

from kubetune.errors import KubetuneError


class StoreError(KubetuneError):
    """The store could not be used: a one-line reason naming the object or bucket."""


class AlreadyExists(StoreError):
    """A write-once object was written before; nothing was overwritten."""


class NotFound(StoreError):
    """The object does not exist."""


class Unreadable(StoreError):
    """Something is there under the object's name, but no object to read: a folder in its place,
    a link out of the store, a file this process may not read. The record's problem, not the store's."""


class Store(Protocol):
    """Flat object names ('trials/000001/result.json') under one root."""

    @property
    def uri(self) -> str: ...

    def create(self, name: str, data: bytes) -> None:
        """Write ``name`` only if it does not exist yet; else raise AlreadyExists.

        Creating an object that already holds exactly ``data`` succeeds: it is
        a retried write whose first attempt landed (GCS loses responses, not
        only requests). Two writers with different bytes: one wins, the other
        gets AlreadyExists.
        """

    def put(self, name: str, data: bytes) -> None:
        """Write or replace ``name`` atomically (readers see old or new, never half)."""

    def get(self, name: str) -> bytes:
        """The object's bytes; NotFound if absent, Unreadable if something else is in its place."""

    def list(self, prefix: str = "") -> list[str]:
        """Names under ``prefix``, sorted."""
