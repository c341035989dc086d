"""Bodies not yet delivered, on disk: a queue of files processes and containers can share.

Each body is one file named by a fresh ULID, so the listing is the queue, oldest first. A
process claims a file by renaming it: a lease, renewed before each attempt, taken back by
anyone once expired; the file goes once its body is settled, so a crash can resend a body,
never lose it. The spool trusts only what it could have written (it is sent with this
agent's token); anything else goes to ``corrupt/``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import secrets
import stat
import threading
import time
from pathlib import Path
from typing import List, NamedTuple, Optional, Union

import ulid

from ..core.payload import count_events, payload_from_document
from ..core.statistics import DropCounter
from ..server_rules.validation import IGNORED, check_own_body
from .settings import Settings

logger = logging.getLogger(__name__)

_SUFFIX = ".json"
_CLAIM = ".sending"
_TEMP = ".tmp"
_CORRUPT = "corrupt"
_PRIVATE = 0o700
_PRIVATE_FILE = 0o600
#: ``<name>.json.<owner>.<ms>.sending``; a claim without a time (an earlier version's
#: ``<name>.json.<pid>-<owner>.sending``) counts as expired.
_CLAIMED = re.compile(
    r"(?P<name>.+?\.json)\.(?:(?P<owner>[0-9a-f]+)\.(?P<ms>[0-9]+)|[0-9]+(?:-[0-9a-f]+)?)"
    r"\.sending\Z")

_STEP_BITS = 48  # of the step between two names written in one millisecond
DEFAULT_LEASE_SECONDS = 120.0

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC
_OPEN = os.O_RDONLY | _NOFOLLOW | _NONBLOCK | _CLOEXEC


class SpoolEntry(NamedTuple):
    """One spooled body: its file and size in bytes."""

    path: Path
    size: int


class _Untrusted(Exception):
    """A spool entry that is not a body this agent wrote: the message says what it is."""


class Spool:
    """Unsent request bodies on disk, oldest first, within ``max_bytes``."""

    def __init__(self, directory: Union[str, os.PathLike[str]], *,
                 max_bytes: int = Settings.spool_max_bytes, drops: Optional[DropCounter] = None,
                 lease_seconds: float = DEFAULT_LEASE_SECONDS) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.drops = drops if drops is not None else DropCounter()
        self.lease_seconds = lease_seconds
        self._lock = threading.Lock()
        self._owner = secrets.token_hex(8)
        self._last = ulid.new()
        try:
            created = self._make_directory()
            probe = self.directory / f".probe-{ulid.new().str}{_TEMP}"
            os.close(os.open(probe, _CREATE, _PRIVATE_FILE))
            os.unlink(probe)
        except OSError as error:
            raise OSError(f"spool_dir {str(self.directory)!r} is not a writable directory: "
                          f"{error.strerror or error}") from None
        if not created:
            self._warn_if_shared()
        # Import the validator now: a lazy import on another thread could hold the import
        # lock when the app forks.
        check_own_body(b"{}")
        self._recover()

    def _make_directory(self) -> bool:
        """Create the directory (and missing parents) ``0700``; False if it existed."""
        try:
            self.directory.mkdir(mode=_PRIVATE, parents=True)
        except FileExistsError:
            return False
        os.chmod(self.directory, _PRIVATE)  # the umask can only have taken bits away
        return True

    def _warn_if_shared(self) -> None:
        mode = os.stat(self.directory).st_mode
        if not mode & (stat.S_IWGRP | stat.S_IWOTH):
            return
        who = "world" if mode & stat.S_IWOTH else "group"
        link = (f" (a symlink to {os.path.realpath(self.directory)!r})"
                if self.directory.is_symlink() else "")
        logger.warning(
            "spool_dir %r%s is %s-writable (mode %s): another user could plant files there for "
            "this agent to send with its token, or remove what it spooled. The spool keeps "
            "working; make it private with: chmod 700 %s",
            str(self.directory), link, who, oct(stat.S_IMODE(mode)), self.directory)

    def write(self, body: bytes) -> Optional[SpoolEntry]:
        """Store ``body`` durably, dropping the oldest files beyond the cap. Never raises: a body
        that cannot be stored is counted (``spool_full``, ``spool_error``)."""
        if len(body) > self.max_bytes:
            self._drop_body(body, "spool_full", "a body larger than the whole spool")
            return None
        with self._lock:
            try:
                try:
                    return self._store(body)
                except OSError:
                    if self.directory.is_dir():
                        raise
                    self._make_directory()  # removed while running: created again, once
                    return self._store(body)
            except Exception as error:  # never out of flush() or close(): counted instead
                what = (error.strerror or str(error) if isinstance(error, OSError)
                        else f"{type(error).__name__}: {error}")
                self._drop_body(body, "spool_error", f"could not write a body: {what}")
                return None

    def _store(self, body: bytes) -> SpoolEntry:
        self._make_room(len(body))
        name = self._next_name()
        temp = self.directory / f".{name}{_TEMP}"
        final = self.directory / f"{name}{_SUFFIX}"
        fd = os.open(temp, _CREATE, _PRIVATE_FILE)
        try:
            try:
                view = memoryview(body)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(temp, final)
        except BaseException:
            with contextlib.suppress(OSError):  # no half-written file left behind
                os.unlink(temp)
            raise
        with contextlib.suppress(OSError):  # not every platform can fsync a directory
            fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        return SpoolEntry(final, len(body))

    def _next_name(self) -> str:
        """A fresh ULID; within one millisecond, one above the last by a random step, so that
        files keep their write order and a forked child's still differ."""
        candidate = ulid.new()
        if candidate.int <= self._last.int:
            candidate = ulid.from_int(self._last.int + 1 + secrets.randbits(_STEP_BITS))
        self._last = candidate
        return candidate.str

    def _make_room(self, needed: int) -> None:
        entries = self.entries()
        used = sum(e.size for e in entries)
        for entry in entries:
            if used + needed <= self.max_bytes:
                break
            claimed = self.claim(entry)
            if claimed is None:
                continue
            used -= entry.size
            body = self.read(claimed)  # what is not a body is set aside (and counted) here
            if body is not None:
                self.remove(claimed)
                self._drop_body(body, "spool_full", "the oldest body, to stay under the size cap")

    def _drop_body(self, body: bytes, reason: str, what: str) -> None:
        try:
            events = count_events(json.loads(body))
        except Exception:  # not a body we can count: it stands for at least one event
            events = 1
        if events:
            self.drops.add(reason, events, detail=f"{what}; spool {str(self.directory)!r}")

    def entries(self) -> List[SpoolEntry]:
        """The queue, oldest first: unclaimed files, and claims whose lease ran out."""
        result = []
        now = time.time()
        with contextlib.suppress(OSError):  # a directory removed while running is empty
            # A file and its claims sort by the name it was written under (its age).
            for name in sorted(os.listdir(self.directory), key=lambda n: n.split(".", 1)[0]):
                if name.endswith(_SUFFIX) or (name.endswith(_CLAIM)
                                              and self._expired(name, now)):
                    path = self.directory / name
                    with contextlib.suppress(OSError):
                        result.append(SpoolEntry(path, os.lstat(path).st_size))
        return result

    def claim(self, entry: SpoolEntry) -> Optional[SpoolEntry]:
        """Take ``entry`` for sending, or renew the lease of a claim of ours; ``None`` if
        another process took it first."""
        return self._rename(entry, self._claim_name(entry.path))

    renew = claim

    def release(self, claimed: SpoolEntry) -> Optional[SpoolEntry]:
        """Put a claimed body back in the queue, at its old place (None if no longer ours)."""
        return self._rename(claimed, self._original(claimed.path))

    def _claim_name(self, path: Path) -> Path:
        return path.with_name(f"{self._original(path).name}.{self._owner}."
                              f"{int(time.time() * 1000)}{_CLAIM}")

    @staticmethod
    def _rename(entry: SpoolEntry, target: Path) -> Optional[SpoolEntry]:
        try:
            os.rename(entry.path, target)  # renames a symlink itself, never its target
        except OSError:
            return None
        return SpoolEntry(target, entry.size)

    def _expired(self, name: str, now: float) -> bool:
        match = _CLAIMED.match(name)
        if match is None or match.group("ms") is None:
            return True  # not a claim this version makes: nobody renews it
        # One from more than a lease ahead was made on a clock no owner renews it by.
        return abs(now - int(match.group("ms")) / 1000) > self.lease_seconds

    def read(self, entry: SpoolEntry) -> Optional[bytes]:
        """The body of a claimed entry, safe to send; None if it is gone or was set aside
        (counted as ``spool_corrupt``). Never raises."""
        try:
            body = self._read_regular(entry.path)
            self._check(body)
        except FileNotFoundError:
            return None  # removed by someone else
        except (_Untrusted, OSError) as error:
            why = str(error) if isinstance(error, _Untrusted) else (
                # O_NOFOLLOW on a link: ELOOP (EMLINK on BSD)
                "a symbolic link" if error.errno in (errno.ELOOP, errno.EMLINK) else
                f"unreadable: {error.strerror or error}")
            self._set_aside(entry.path, why)
            return None
        return body

    def _read_regular(self, path: Path) -> bytes:
        """The bytes of ``path`` if it is a regular file of ours; never follows or blocks."""
        _require_regular(os.lstat(path))  # before opening: opening a device can act
        fd = os.open(path, _OPEN)  # and again on what was opened, in case it was swapped
        try:
            info = os.fstat(fd)
            _require_regular(info)
            if info.st_size > self.max_bytes:
                raise _Untrusted(f"larger than the spool's cap ({info.st_size} bytes)")
            chunks, left = [], self.max_bytes + 1
            while left > 0:
                chunk = os.read(fd, min(left, 1 << 20))
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
            if left <= 0:
                raise _Untrusted("larger than the spool's cap")
            return b"".join(chunks)
        finally:
            os.close(fd)

    @staticmethod
    def _check(body: bytes) -> None:
        problems = [p for p in check_own_body(body) if p.outcome != IGNORED]
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise _Untrusted(f"not a valid body: {problems[0]}{more}")
        try:
            document = json.loads(body)
            payload_from_document(document)
            count_events(document)
        except Exception as error:  # what delivery does with it must not fail
            raise _Untrusted(f"not a body the agent can send: {type(error).__name__}: "
                             f"{error}") from None

    def _set_aside(self, path: Path, why: str) -> None:
        """Move an untrusted entry to ``corrupt/`` (or delete it); count it."""
        name = self._original(path).name
        corrupt = self._corrupt_directory()
        where = "deleted"
        try:
            if corrupt is None:
                os.unlink(path)
            else:
                target = corrupt / name
                if os.path.lexists(target):
                    target = corrupt / f"{name}.{ulid.new().str}"
                os.rename(path, target)
                where = f"moved to {corrupt}"
        except FileNotFoundError:
            return  # someone else dealt with it
        except OSError as error:
            where = f"left in place ({error.strerror or error})"
        logger.warning("spool file %s is corrupt (%s); %s", name, why, where)
        self.drops.add("spool_corrupt", detail=f"spool {str(self.directory)!r}")

    def _corrupt_directory(self) -> Optional[Path]:
        corrupt = self.directory / _CORRUPT
        try:
            with contextlib.suppress(FileExistsError):
                os.mkdir(corrupt, _PRIVATE)
            return corrupt if stat.S_ISDIR(os.lstat(corrupt).st_mode) else None
        except OSError:
            return None

    def remove(self, entry: SpoolEntry) -> bool:
        """Delete a settled body; False if the file was no longer ours, or stays (then
        whoever finds it may send it again)."""
        try:
            entry.path.unlink()
        except FileNotFoundError:
            return False
        except OSError as error:
            logger.warning("could not remove the spooled body %s (%s): it may be sent again",
                           entry.path.name, error.strerror or error)
            return False
        return True

    def size_bytes(self) -> int:
        return sum(e.size for e in self.entries())

    def __len__(self) -> int:
        return len(self.entries())

    def reset_after_fork(self) -> None:
        """A forked child gets its own lock, and an owner name of its own for its claims."""
        self._lock = threading.Lock()
        self._owner = secrets.token_hex(8)

    def _recover(self) -> None:
        """Requeue expired claims, set aside claim names no spool makes, and delete temporary
        files older than a minute."""
        now = time.time()
        for path in self.directory.glob(f"*{_CLAIM}"):
            if _CLAIMED.match(path.name) is None:
                self._set_aside(path, "not a name this spool makes")
            elif self._expired(path.name, now):
                self.release(SpoolEntry(path, 0))
        for path in self.directory.glob(f".*{_TEMP}"):
            with contextlib.suppress(OSError):
                if time.time() - os.lstat(path).st_mtime > 60:
                    path.unlink()

    @staticmethod
    def _original(path: Path) -> Path:
        match = _CLAIMED.match(path.name)
        return path.with_name(match.group("name")) if match else path

    def __repr__(self) -> str:
        return f"<Spool {str(self.directory)!r}>"


def _require_regular(info: os.stat_result) -> None:
    mode = info.st_mode
    if not stat.S_ISREG(mode):
        kinds = {stat.S_IFLNK: "a symbolic link", stat.S_IFIFO: "a FIFO",
                 stat.S_IFDIR: "a directory", stat.S_IFSOCK: "a socket",
                 stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device"}
        raise _Untrusted(f"{kinds.get(stat.S_IFMT(mode), 'not a regular file')}, "
                         "not a file the spool wrote")
    if info.st_nlink != 1:
        raise _Untrusted(f"a hard link ({info.st_nlink} names), not a file the spool wrote")
