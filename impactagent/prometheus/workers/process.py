"""Who wrote a file, and whether that process still runs.

Pids are reused, so a file is stamped with its writer's start time and the boot id. Without
``/proc`` a live pid is taken at its word (a reused pid only delays a fold). A file from
another pid namespace cannot be judged here: it is never folded or removed.

A writer is looked at (:func:`see`) *before* its file is read: one seen gone has written its
last, so what is read then is all it counted. Looked at after the read, a writer could have
published again and ended in between, and a fold would take the older counts for its last.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import List, NamedTuple, Optional


class Parent(NamedTuple):
    """A writer's parent: while it runs, its next worker continues the totals."""

    pid: int
    started: Optional[int]
    boot: str
    namespace: str


class Stamp(NamedTuple):
    """What a file says about the process that wrote it."""

    pid: int
    started: Optional[int]  # clock ticks since boot; None where unknown
    parent: int  # the process that started it (the gunicorn master, say)
    parent_started: Optional[int]
    boot: str  # Linux ``boot_id``; the host name elsewhere
    namespace: str  # the pid namespace ("" where unknown)

    @property
    def started_by(self) -> Parent:
        return Parent(self.parent, self.parent_started, self.boot, self.namespace)


def _stat_fields(pid: int) -> Optional[List[str]]:
    """``/proc/<pid>/stat`` from field 3 (the state) on."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()


def _started(fields: Optional[List[str]]) -> Optional[int]:
    try:
        return int(fields[19]) if fields is not None else None  # field 22: starttime
    except (IndexError, ValueError):
        return None


def _boot() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return socket.gethostname()


def _namespace() -> str:
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return ""


def current() -> Stamp:
    """This process's stamp (read again after a fork: the pid and start time change)."""
    pid, parent = os.getpid(), os.getppid()
    return Stamp(pid, _started(_stat_fields(pid)), parent, _started(_stat_fields(parent)),
                 _boot(), _namespace())


def judgeable(stamp: Stamp, here: Stamp) -> bool:
    """Whether this process can tell if ``stamp``'s writer lives."""
    return stamp.boot != here.boot or stamp.namespace == here.namespace


def alive(stamp: Stamp, here: Stamp, seen: Seen) -> bool:
    """Whether the process that wrote ``stamp`` ran when its file's pid was ``seen`` (call
    only when judgeable)."""
    return stamp.boot == here.boot and seen.is_process(stamp.pid, stamp.started)


def runs(started_by: Parent, here: Stamp) -> bool:
    """Whether a remembered parent still runs: the same process (its start time says so), on
    this boot and in this pid namespace. A master that is pid 1 (gunicorn as a container's
    first process) runs its deployment; a new deploy is a new master, started anew."""
    return (started_by.boot == here.boot and started_by.namespace == here.namespace
            and pid_runs(started_by.pid, started_by.started))


class Seen(NamedTuple):
    """A pid looked at once: whether a process had it, and since when (None where unknown)."""

    pid: int
    runs: bool
    started: Optional[int]

    def is_process(self, pid: int, started: Optional[int]) -> bool:
        """Whether it was ``pid``, running, started at ``started`` (None: any)."""
        return (self.pid == pid and self.runs
                and (started is None or self.started is None or self.started == started))


def see(pid: int) -> Seen:
    """Look at ``pid`` now (0, the parent of a pid namespace's first process, is no process:
    ``kill(0, 0)`` would ask this process's group)."""
    if pid <= 0:
        return Seen(pid, False, None)
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # a name's pid may be any digits
        return Seen(pid, False, None)
    except PermissionError:
        pass  # another user's process has that pid now: the start time tells
    fields = _stat_fields(pid)
    if fields and fields[0] in ("Z", "X"):
        return Seen(pid, False, None)  # a zombie or dead process still answers kill(pid, 0)
    return Seen(pid, True, _started(fields))


def pid_runs(pid: int, started: Optional[int] = None) -> bool:
    """Whether ``pid`` runs (and started at ``started`` when that is known)."""
    return see(pid).is_process(pid, started)
