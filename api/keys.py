"""API keys: a small file of named keys, each with a scope, stored as hashes; who may do what.

A key is a random token (``pwk_`` + 43 URL-safe characters, 256 bits) shown once, when it is made
(``plantwatch keys create``). The file keeps its SHA-256, never the token: the token has full entropy,
so a slow password hash would buy nothing (that is for guessable passwords), and one hash per
request keeps a poller cheap. The file is the deployment's, like Mosquitto's password file: the CLI
writes it (atomically, mode 0600) while the service runs, and the service reads it again whenever it
changed, so a revoked key stops working at its next request.

Scopes are ordered: ``read`` (the alerts, maintenance and metrics), ``operate`` (what a shift does:
feedback on alerts), ``admin`` (relearning a baseline). A key of one scope may do what the scopes
below it allow.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCOPES = ("read", "operate", "admin")  # each includes the ones before it
TOKEN_PREFIX = "pwk_"
FORMAT_VERSION = 1
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class KeyFileError(Exception):
    """The key file cannot be read or written; the message is one line naming the file."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One key as the file keeps it: its name, scope, the SHA-256 of its token, when made and revoked."""

    name: str
    scope: str
    sha256: str
    created: str  # ISO 8601, UTC
    revoked: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked is None

    def allows(self, scope: str) -> bool:
        """Whether this key may do what ``scope`` needs."""
        return self.active and SCOPES.index(self.scope) >= SCOPES.index(scope)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_scope(scope: str) -> str:
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    return scope


class KeyFile:
    """The keys of one file, read again when the file changes (thread-safe: the API's threads share it)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int] | None = None  # (inode, mtime_ns, size) of the file last read
        self._keys: tuple[ApiKey, ...] = ()

    # -- reading ---------------------------------------------------------------------------------

    def all_keys(self) -> tuple[ApiKey, ...]:
        """Every key in the file now, revoked ones too (none when there is no file)."""
        with self._lock:
            try:
                stat = self.path.stat()
            except FileNotFoundError:
                self._seen, self._keys = None, ()
                return ()
            except OSError as exc:
                raise KeyFileError(f"cannot read the API key file {self.path}: {exc.strerror}") from None
            seen = (stat.st_ino, stat.st_mtime_ns, stat.st_size)  # each write replaces the file: a new inode
            if seen != self._seen:
                self._keys = _parse(self.path)
                self._seen = seen
            return self._keys

    def active(self) -> tuple[ApiKey, ...]:
        return tuple(key for key in self.all_keys() if key.active)

    def authenticate(self, token: str) -> ApiKey | None:
        """The active key whose token this is, or None."""
        digest = token_hash(token)
        for key in self.active():
            if secrets.compare_digest(key.sha256, digest):
                return key
        return None

    # -- changing (the CLI) -----------------------------------------------------------------------

    def create(self, name: str, scope: str) -> str:
        """Add a key; returns its token, which is kept nowhere else."""
        if not _NAME.fullmatch(name):
            raise ValueError(f"key name {name!r}: 1-64 letters, digits, '_', '.' or '-', first a letter or digit")
        check_scope(scope)
        with self._changing() as keys:
            if any(key.name == name and key.active for key in keys):
                raise ValueError(f"a key named {name!r} exists in {self.path}; revoke it first or choose another name")
            token = TOKEN_PREFIX + secrets.token_urlsafe(32)
            self._write((*keys, ApiKey(name, scope, token_hash(token), _now())))
        return token

    def revoke(self, name: str) -> int:
        """Revoke every active key of that name; how many (0: none)."""
        with self._changing() as keys:
            hit = sum(1 for key in keys if key.name == name and key.active)
            if hit:
                now = _now()
                self._write(tuple(_revoked(key, now) if key.name == name and key.active else key for key in keys))
        return hit

    @contextlib.contextmanager
    def _changing(self) -> Iterator[tuple[ApiKey, ...]]:
        """The keys as the file holds them now, under an exclusive lock of ``<file>.lock`` until the change
        is written: two commands at once would otherwise each write their own change over the other's
        (a revocation lost while the command said it succeeded, measured in review)."""
        lock_path = self.path.with_name(self.path.name + ".lock")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lock = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise KeyFileError(f"cannot lock the API key file {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield _parse(self.path) if self.path.exists() else ()  # fresh, never the cache
        finally:
            os.close(lock)  # releases the lock

    def _write(self, keys: tuple[ApiKey, ...]) -> None:
        body = json.dumps({"version": FORMAT_VERSION, "keys": [asdict(k) for k in keys]}, indent=2) + "\n"
        folder = self.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{self.path.name}.")  # mode 0600
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    fh.write(body)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise KeyFileError(f"cannot write the API key file {self.path}: {exc.strerror}") from None


def _revoked(key: ApiKey, when: str) -> ApiKey:
    return ApiKey(key.name, key.scope, key.sha256, key.created, when)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _parse(path: Path) -> tuple[ApiKey, ...]:
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
        if data.get("version") != FORMAT_VERSION:
            raise ValueError(f"version {data.get('version')!r}, expected {FORMAT_VERSION}")
        keys = tuple(ApiKey(**item) for item in data["keys"])
        for key in keys:
            check_scope(key.scope)
        return keys
    except OSError as exc:
        raise KeyFileError(f"cannot read the API key file {path}: {exc.strerror}") from None
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise KeyFileError(f"the API key file {path} is not one plantwatch wrote: {exc}") from None
