"""Request bodies that could not be delivered, kept on disk until they can be.

Each body is one file named by a ULID (``01JD...json``): ULIDs sort by time, so the
directory listing is the queue, oldest first. Files are written atomically (a temporary
file is written, fsynced and renamed, and the directory is fsynced), so after ``kill -9``
a file is either whole or absent.

To send a file, a process first *claims* it by renaming it to ``<name>.<pid>.sending``; a
rename succeeds for one process only, so a parent and its forked workers sharing the
directory never send the same body twice. A claim left behind by a process that died is
put back in the queue when a spool is opened. A file is removed only after its body was
delivered or dropped (counted): a crash in between resends it, and never loses it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import List, NamedTuple, Optional, Union

import ulid

from .payload import count_events
from .statistics import DropCounter

logger = logging.getLogger("impactagent")

_SUFFIX = ".json"
_CLAIM = ".sending"
_TEMP = ".tmp"


class SpoolEntry(NamedTuple):
    """One spooled body: its file and size in bytes."""

    path: Path
    size: int


class Spool:
    """Unsent request bodies on disk, oldest first, within ``max_bytes``.

    >>> import tempfile
    >>> spool = Spool(tempfile.mkdtemp())
    >>> entry = spool.write(b'{"appName": "shop"}')
    >>> [spool.read(e) for e in spool.entries()]
    [b'{"appName": "shop"}']
    """

    def __init__(self, directory: Union[str, os.PathLike], *, max_bytes: int = 50_000_000,
                 drops: Optional[DropCounter] = None) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.drops = drops if drops is not None else DropCounter()
        self._lock = threading.Lock()
        self._last = ulid.new()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            probe = self.directory / f".probe-{os.getpid()}{_TEMP}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as error:
            raise OSError(f"spool_dir {str(self.directory)!r} is not a writable directory: "
                          f"{error.strerror or error}") from None
        self._recover()

    # -- writing -----------------------------------------------------------------------------

    def write(self, body: bytes) -> Optional[SpoolEntry]:
        """Store ``body`` durably; drop the oldest files if the spool would exceed its cap."""
        if len(body) > self.max_bytes:
            self._drop_body(body, "a body larger than the whole spool")
            return None
        with self._lock:
            self._make_room(len(body))
            name = self._next_name()
            temp = self.directory / f".{name}{_TEMP}"
            final = self.directory / f"{name}{_SUFFIX}"
            with open(temp, "wb") as handle:
                handle.write(body)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, final)
            self._fsync_directory()
            return SpoolEntry(final, len(body))

    def _next_name(self) -> str:
        # ulid.new() is random within a millisecond: force strictly increasing names so
        # that the file order is the write order.
        candidate = ulid.new()
        if candidate.int <= self._last.int:
            candidate = ulid.from_int(self._last.int + 1)
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
            body = self._read_bytes(claimed.path)
            used -= entry.size
            self.remove(claimed)
            if body is not None:
                self._drop_body(body, "the oldest body, to stay under the size cap")

    def _drop_body(self, body: bytes, what: str) -> None:
        try:
            events = count_events(json.loads(body))
        except (ValueError, KeyError, TypeError):
            events = 1
        self.drops.add("spool_full", events, detail=f"{what}; spool {str(self.directory)!r}")

    def _fsync_directory(self) -> None:
        with contextlib.suppress(OSError):  # not every platform can fsync a directory
            fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    # -- reading, claiming, removing ---------------------------------------------------------

    def entries(self) -> List[SpoolEntry]:
        """Unclaimed bodies, oldest first."""
        result = []
        for path in sorted(self.directory.glob(f"*{_SUFFIX}")):
            with contextlib.suppress(FileNotFoundError):
                result.append(SpoolEntry(path, path.stat().st_size))
        return result

    def claim(self, entry: SpoolEntry) -> Optional[SpoolEntry]:
        """Take ``entry`` for sending; ``None`` if another process took it first."""
        claimed = entry.path.with_name(f"{entry.path.name}.{os.getpid()}{_CLAIM}")
        try:
            os.rename(entry.path, claimed)
        except FileNotFoundError:
            return None
        return SpoolEntry(claimed, entry.size)

    def release(self, claimed: SpoolEntry) -> None:
        """Put a claimed body back in the queue, at its original (old) place."""
        with contextlib.suppress(FileNotFoundError):
            os.rename(claimed.path, self._original(claimed.path))

    def read(self, entry: SpoolEntry) -> Optional[bytes]:
        """The body of a (claimed) entry; a corrupt file is moved aside, counted, and skipped."""
        body = self._read_bytes(entry.path)
        if body is None:
            return None
        try:
            document = json.loads(body)
            if not isinstance(document, dict) or "appName" not in document:
                raise ValueError("not a ClientMetrics document")
        except ValueError as error:
            corrupt = self.directory / "corrupt"
            corrupt.mkdir(exist_ok=True)
            target = corrupt / self._original(entry.path).name
            with contextlib.suppress(FileNotFoundError):
                os.replace(entry.path, target)
            logger.warning("impactagent: spool file %s is corrupt (%s); moved to %s",
                           self._original(entry.path).name, error, corrupt)
            self.drops.add("spool_corrupt", detail=f"spool {str(self.directory)!r}")
            return None
        return body

    def remove(self, entry: SpoolEntry) -> None:
        """Delete a body that was delivered or dropped."""
        with contextlib.suppress(FileNotFoundError):
            entry.path.unlink()

    def size_bytes(self) -> int:
        return sum(e.size for e in self.entries())

    def __len__(self) -> int:
        return len(self.entries())

    # -- recovery ----------------------------------------------------------------------------

    def reset_after_fork(self) -> None:
        """A forked child gets its own lock (the parent's may be held by another thread)."""
        self._lock = threading.Lock()

    def _recover(self) -> None:
        """Put back claims of dead processes; delete temporary files older than a minute."""
        for path in self.directory.glob(f"*{_CLAIM}"):
            pid = int(path.name.rsplit(".", 2)[1]) if path.name.count(".") >= 3 else 0
            if not _alive(pid):
                with contextlib.suppress(FileNotFoundError):
                    os.rename(path, self._original(path))
        for path in self.directory.glob(f".*{_TEMP}"):
            with contextlib.suppress(FileNotFoundError):
                if time.time() - path.stat().st_mtime > 60:
                    path.unlink()

    @staticmethod
    def _original(path: Path) -> Path:
        if path.name.endswith(_CLAIM):
            return path.with_name(path.name.rsplit(".", 2)[0])
        return path

    @staticmethod
    def _read_bytes(path: Path) -> Optional[bytes]:
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None

    def __repr__(self) -> str:
        return f"<Spool {str(self.directory)!r}>"


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
