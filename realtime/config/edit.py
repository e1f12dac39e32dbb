"""Atomic edits of the operator's files that keep their comments and
layout (DESIGN.md §2: config "atomic edits that keep comments").

Used by the admin commands (``realtime app|user ...``) and by the server
itself when a provider's first login adds a user (``auto_create``), so it
sits in ``config`` below both; it does blocking file I/O (call it from a
worker thread inside the server).

Every read-modify-write of one of these files runs under :func:`locked`,
so two writers at once (two ``realtime user add``, or one and a provider's
first login in the server) cannot lose each other's edit.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import tomlkit


class EditError(Exception):
    """A message for the operator (already names the file)."""


#: The mode of every file written here: they hold password and secret hashes.
FILE_MODE = 0o600


def lock_path(path: Path) -> Path:
    """The sidecar lock file of ``path``: ``.NAME.lock`` in the same directory."""
    return path.with_name(f".{path.name}.lock")


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock for a whole read-modify-write of ``path``.

    Blocking (``fcntl.flock`` waits for the holder).  The lock is taken on
    a sidecar file, not on ``path`` itself: :func:`atomic_write` replaces
    ``path`` by rename, so a lock on its inode would guard a file that is
    no longer the one in the directory, and the next writer would lock the
    new inode while the first still held the old one.  The sidecar is
    never renamed or removed, so every writer meets on the same inode.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(lock_path(path), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, FILE_MODE)
    except OSError as exc:
        raise EditError(f"{path}: cannot lock: {exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the only descriptor releases the lock


def replace_file(path: Path, text: str, mode: int | None = None) -> None:
    """Replace ``path`` with ``text`` through a temp file beside it.

    The temp file is made by ``mkstemp`` in the target directory: a fresh
    random name opened with O_EXCL and mode 0600, so a symlink or file
    planted at a guessable name (``<file>.tmp``) in a shared directory is
    neither followed nor reused.  It is written, fsync'd, given ``mode``
    (when set) and renamed over ``path``; on any failure it is removed.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``: temp file beside it, fsync, rename.

    The new file is always 0600 (:data:`FILE_MODE`), also when it replaces
    one that was group- or world-readable: it holds password and secret
    hashes.  Call it under :func:`locked` when ``text`` came from reading
    ``path``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_file(path, text, FILE_MODE)
    try:
        dfd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def load_toml(path: Path) -> tomlkit.TOMLDocument:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        doc = tomlkit.document()
        doc.add(tomlkit.comment("Registered applications; edit with `realtime app ...`."))
        return doc
    except (OSError, UnicodeDecodeError) as exc:
        raise EditError(f"{path}: cannot read: {exc}") from None
    try:
        return tomlkit.parse(text)
    except Exception as exc:  # tomlkit raises its own ParseError family
        raise EditError(f"{path}: not valid TOML: {exc}") from None


class UserFile:
    """``users.json`` (``{"users": [...]}`` or a bare list) or ``users.toml``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.is_toml = path.suffix.lower() == ".toml"
        if self.is_toml:
            self.doc: Any = load_toml(path)
            users = self.doc.get("user")
            if users is None:
                users = tomlkit.aot()
                self.doc["user"] = users
            self.users = users
        else:
            try:
                text = path.read_text(encoding="utf-8")
            except FileNotFoundError:
                text = '{"users": []}'
            except (OSError, UnicodeDecodeError) as exc:
                raise EditError(f"{path}: cannot read: {exc}") from None
            try:
                self.doc = json.loads(text)
            except ValueError as exc:
                raise EditError(f"{path}: not valid JSON: {exc}") from None
            if isinstance(self.doc, dict):
                self.users = self.doc.setdefault("users", [])
            else:
                self.users = self.doc
        if not isinstance(self.users, list) or not all(isinstance(u, dict) for u in self.users):
            raise EditError(f"{path}: expected a list of users")

    def find(self, name: str) -> dict[str, Any]:
        for user in self.users:
            if user.get("name") == name:
                return user
        raise EditError(f"{self.path}: no user named {name!r}")

    def exists(self, name: str) -> bool:
        return any(str(u.get("name", "")).casefold() == name.casefold() for u in self.users)

    def add_user(self, name: str, scopes: list[str], *, password_hash: str | None = None,
                 display_name: str | None = None, email: str | None = None) -> None:
        """Append one user, with only the optional fields that are set."""
        record: dict[str, Any] = {"name": name}
        if password_hash is not None:
            record["password_hash"] = password_hash
        record["scopes"] = scopes
        if display_name:
            record["display_name"] = display_name
        if email:
            record["email"] = email
        if self.is_toml:
            table = tomlkit.table()
            table.update(record)
            self.users.append(table)
        else:
            self.users.append(record)

    def save(self) -> None:
        if self.is_toml:
            text = tomlkit.dumps(self.doc)
        else:
            text = json.dumps(self.doc, indent=2, ensure_ascii=False) + "\n"
        atomic_write(self.path, text)
