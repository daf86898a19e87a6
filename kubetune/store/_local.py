"""A folder on the local disk: the store a newcomer meets first."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from kubetune.store._base import AlreadyExists, NotFound, StoreError, Unreadable


class LocalStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def open(cls, path: str, *, create: bool) -> LocalStore:
        root = Path(path).expanduser().resolve()
        if create:
            try:
                root.mkdir(parents=True, exist_ok=True)
                _check_writable(root)
            except OSError as exc:
                raise StoreError(f"store {path}: cannot write: {exc.strerror}") from exc
        elif not root.is_dir():
            raise NotFound(f"store {path}: no such folder")
        return cls(root)

    @property
    def uri(self) -> str:
        return str(self.root)

    def _path(self, name: str) -> Path:
        # Lexical: the name must stay inside; what a link in the store points at is get()'s concern.
        path = Path(os.path.normpath(self.root / name))
        if not path.is_relative_to(self.root) or path == self.root:
            raise StoreError(f"store: object name {name!r} escapes the store")
        return path

    def _staged(self, name: str, data: bytes) -> Path:
        """Write ``data`` to a temporary file beside ``name``'s final place."""
        target = self._path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return Path(tmp)

    def create(self, name: str, data: bytes) -> None:
        tmp = self._staged(name, data)
        try:
            # link() refuses an existing target, so the whole file appears at
            # once and exactly one of several racing writers wins.
            os.link(tmp, self._path(name))
        except FileExistsError:
            try:
                same = self.get(name) == data
            except Unreadable:  # a folder in its place, say: written, though not by a writer
                same = False
            if not same:
                raise AlreadyExists(f"{self.uri}/{name}: already written") from None
        finally:
            tmp.unlink()

    def put(self, name: str, data: bytes) -> None:
        os.replace(self._staged(name, data), self._path(name))

    def get(self, name: str) -> bytes:
        path = self._path(name)
        try:
            if not path.resolve().is_relative_to(self.root):
                raise Unreadable(f"{self.uri}/{name}: a link out of the store")
            return path.read_bytes()
        except FileNotFoundError:
            raise NotFound(f"{self.uri}/{name}: not found") from None
        except (IsADirectoryError, NotADirectoryError, PermissionError) as exc:
            raise Unreadable(f"{self.uri}/{name}: cannot read: {exc.strerror}") from None
        except OSError as exc:
            raise StoreError(f"{self.uri}/{name}: read failed: {exc.strerror}") from None

    def list(self, prefix: str = "") -> list[str]:
        # Walk only the folder the prefix names: listing one trial's epochs
        # costs the same in a study of ten trials or of ten thousand.
        top = self.root / prefix.rpartition("/")[0]
        names = (
            p.relative_to(self.root).as_posix()
            for p in top.rglob("*")
            if p.is_file() and not p.name.startswith(".tmp-")
        )
        return sorted(n for n in names if n.startswith(prefix))


def _check_writable(root: Path) -> None:
    # Fail at open, not after the first trial trained for minutes.
    fd, tmp = tempfile.mkstemp(dir=root, prefix=".tmp-")
    os.close(fd)
    os.unlink(tmp)
