"""The per-host directory the workers share: safe files, atomic replaces, one lock file.

The spool's rules, as a planted file would be summed into every scrape: directories are
``0700`` and this user's; files are created ``0600`` with ``O_EXCL | O_NOFOLLOW`` and renamed
over the old one; a file is read only when it is a regular file with one link, this user's.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import secrets
import stat
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator, Optional, Union

logger = logging.getLogger("impactagent")

MAX_BYTES = 16_000_000

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_OPEN = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_LOCK = ".lock"
_SHARED = stat.S_IWGRP | stat.S_IWOTH  # a directory others may write into


def default_directory(app_name: str, environment: str) -> Path:
    """``<tmp>/impactagent-<uid>/prometheus-<hint>-<digest>``: one per user, app and
    environment. OSError unless the per-user folder is private (in a shared ``/tmp``)."""
    mine = Path(tempfile.gettempdir()) / f"impactagent-{os.geteuid()}"
    try:
        mine.mkdir(mode=0o700)
        os.chmod(mine, 0o700)
    except FileExistsError:
        info = os.lstat(mine)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & _SHARED:
            raise PermissionError(errno.EPERM, "not a private directory of this user's: "
                                  "pass a directory of your own", str(mine)) from None
    return mine / f"prometheus-{folder_key(app_name, environment)}"


def folder_key(app_name: str, environment: str) -> str:
    """``<hint>-<digest>``: a file name that only this app and environment give."""
    def hint(text: str, length: int) -> str:
        return "".join(c if c.isascii() and (c.isalnum() or c in "_.") else "_"
                       for c in text[:length])

    # JSON of the pair: no separator inside either text can make two pairs one string.
    pair = json.dumps([app_name, environment]).encode("ascii")
    digest = hashlib.sha256(pair).hexdigest()[:32]
    return f"{hint(app_name, 40)}-{hint(environment, 16)}-{digest}"


def prepare(directory: Union[str, os.PathLike[str]]) -> Path:
    """Create ``directory`` (and missing parents) ``0700``, or check the one there: OSError
    when it is not this user's."""
    path = Path(directory)
    try:
        path.mkdir(mode=0o700, parents=True)
        os.chmod(path, 0o700)  # the umask can only have taken bits away
        return path
    except FileExistsError:
        pass
    info = os.stat(path)  # the directory itself may be a symlink an admin made: followed
    if not stat.S_ISDIR(info.st_mode):
        raise NotADirectoryError(errno.ENOTDIR, "not a directory", str(path))
    if info.st_uid != os.geteuid():
        raise PermissionError(errno.EPERM, f"owned by uid {info.st_uid}, not by this user "
                              f"(uid {os.geteuid()}): choose a directory of your own",
                              str(path))
    if info.st_mode & _SHARED:
        logger.warning("impactagent: the workers' Prometheus directory %r is group- or "
                       "world-writable (mode %s): another user could plant counts there. "
                       "Make it private with: chmod 700 %s", str(path),
                       oct(stat.S_IMODE(info.st_mode)), path)
    return path


def recreate(directory: Path) -> None:
    """Make ``directory`` and its missing parents again after it was removed while in use;
    stricter than :func:`prepare`, as no admin chose what is there now."""
    missing = []
    path = directory
    while not os.path.lexists(path) and path != path.parent:
        missing.append(path)
        path = path.parent
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o700)
        try:  # one descriptor, opened without following a symlink, checked and made 0700
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as error:
            if error.errno in (errno.ELOOP, errno.ENOTDIR):
                raise NotADirectoryError(errno.ENOTDIR, "not a directory (a symlink?): "
                                         "refused", str(path)) from None
            raise
        try:
            info = os.fstat(fd)
            if info.st_uid != os.geteuid() or info.st_mode & _SHARED:
                raise PermissionError(errno.EPERM, "not a private directory of this user's: "
                                      "refused", str(path))
            os.fchmod(fd, 0o700)
        finally:
            os.close(fd)


def replace(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (``0600``); on OSError the old file stays whole."""
    temporary = path.with_name(f"{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, _CREATE, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def read(path: Path) -> Optional[bytes]:
    """The bytes of ``path`` if it is a file this user wrote here, else None."""
    try:
        fd = os.open(path, _OPEN)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if (not stat.S_ISREG(info.st_mode) or info.st_nlink != 1
                or info.st_uid != os.geteuid() or info.st_size > MAX_BYTES):
            return None
        with os.fdopen(fd, "rb") as source:
            fd = -1
            return source.read(MAX_BYTES + 1)
    except OSError:
        return None
    finally:
        if fd >= 0:
            os.close(fd)


def remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


# The directory's lock is a record lock (lockf): it belongs to a process, so no child inherits
# it, however it forks (an flock is on a file description the child shares: held by another
# thread at the fork, it would stay held for the child's life). A record lock does not order
# one process's threads, so a thread lock does; a child makes its own, as a copy held at the
# fork would never be released.
_threads: dict[int, threading.Lock] = {}


def _thread_lock() -> threading.Lock:
    """This process's thread lock; a child forked without Python's hooks makes its own at
    its first call (``setdefault``: two threads racing to make it get one lock)."""
    return _threads.setdefault(os.getpid(), threading.Lock())


os.register_at_fork(after_in_child=_threads.clear)


@contextlib.contextmanager
def locked(directory: Path, timeout: float = 5.0) -> Iterator[None]:
    """Hold the directory's lock across processes and threads; TimeoutError after
    ``timeout`` (a holder stopped with SIGSTOP must not hang every scrape)."""
    deadline = time.monotonic() + timeout
    threads = _thread_lock()
    if not threads.acquire(timeout=timeout):
        raise TimeoutError(f"another thread held {directory / _LOCK} for {timeout} s")
    try:
        fd = os.open(directory / _LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        try:
            while True:
                try:
                    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as error:  # EAGAIN or EACCES, as the system has it
                    if error.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{directory / _LOCK} stayed locked for "
                                           f"{timeout} s") from None
                    time.sleep(0.005)
            yield
        finally:
            os.close(fd)  # closing releases the lock
    finally:
        threads.release()
