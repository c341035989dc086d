"""The directory's bookkeeping: ``w-<pid>-<agent>.json`` per agent and process, ``departed.json``
(what the dead counted, the files folded into it, their parents that still run), ``.lock``.
A **fold** writes the dead writers' files into ``departed.json``, then removes them (readers
skip the names it lists); a writer is judged by a look taken before its file is read, so the
file folded holds its last counts. A **join** (a first publish, written under the lock) starts
a new generation when no writer and no writer's parent still runs; otherwise it folds and the
totals continue.
Families are summed sample by sample; the first file read decides a family's type and help.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Concatenate, NamedTuple, Optional, ParamSpec, TypeGuard, TypeVar

from prometheus_client.metrics_core import Metric

from . import directory as files
from . import process

logger = logging.getLogger("impactagent")

#: A family as plain data, ``[name, type, help, [[sample, {labels}, value], ...]]``.
Plain = list[Any]
_Key = tuple[str, tuple[tuple[str, str], ...]]
_KINDS = ("counter", "gauge", "histogram")

DEPARTED = "departed.json"
#: A pid is never 0: ``kill(0, 0)`` asks the caller's process group, which always answers.
_WORKER = re.compile(r"w-(?P<pid>[1-9][0-9]*)-[0-9a-f]+\.json\Z")
_TEMPORARY = re.compile(
    r"(w-(?P<pid>[1-9][0-9]*)-[0-9a-f]+\.json|departed\.json)\.[0-9a-f]+\.tmp\Z")
VERSION = 1
_T = TypeVar("_T")
_P = ParamSpec("_P")
_MAYBE_INT = (int, type(None))
#: The types of a stamp's and a parent's fields, as a file must hold them.
_STAMP = (int, _MAYBE_INT, int, _MAYBE_INT, object, object)
_PARENT = (int, _MAYBE_INT, str, str)


def to_plain(metrics: Iterable[Metric]) -> list[Plain]:
    """Families as JSON-ready lists."""
    return [[m.name, m.type, m.documentation,
             [[s.name, dict(s.labels), s.value] for s in m.samples]] for m in metrics]


class Totals:
    """Families added up, in the order first seen."""

    def __init__(self) -> None:
        self._families: dict[str, tuple[str, str, dict[_Key, float]]] = {}

    def add(self, families: Iterable[Plain], *, gauges: bool = True,
            extra: tuple[tuple[str, str], ...] = ()) -> None:
        """Add one worker's families (``extra``: labels for each sample, as a ``pid``).
        Malformed entries are skipped: a file is never trusted."""
        for family in families:
            try:
                name, kind, help_text, samples = family
                if kind not in _KINDS or (kind == "gauge" and not gauges):
                    continue
                known = self._families.setdefault(name, (kind, help_text, {}))
                if known[0] != kind:
                    continue
                values = known[2]
                for sample_name, labels, value in samples:
                    key = (str(sample_name),
                           tuple((str(k), str(v)) for k, v in labels.items()) + extra)
                    values[key] = values.get(key, 0) + float(value)
            except (TypeError, ValueError, AttributeError):
                continue

    def plain(self) -> list[Plain]:
        """The totals as plain families again (what the departed file keeps)."""
        return [[name, kind, help_text,
                 [[sample, dict(labels), value] for (sample, labels), value in values.items()]]
                for name, (kind, help_text, values) in self._families.items()]

    def metrics(self) -> Iterator[Metric]:
        for name, (kind, help_text, values) in self._families.items():
            metric = Metric(name, help_text, kind)
            hidden = _unsound_counts(values) if kind == "histogram" else set()
            for (sample, labels), value in values.items():
                if (sample, labels) not in hidden:
                    metric.add_sample(sample, dict(labels), value)
            if metric.samples:
                yield metric


def _unsound_counts(values: dict[_Key, float]) -> set[_Key]:
    """The ``_sum``/``_count`` samples of series whose count is not the +Inf bucket's."""
    infinite: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for (sample, labels), value in values.items():
        if sample.endswith("_bucket") and ("le", "+Inf") in labels:
            base = sample[:-len("_bucket")]
            infinite[(base, tuple(kv for kv in labels if kv[0] != "le"))] = value
    hidden = set()
    for (sample, labels), value in values.items():
        if sample.endswith("_count"):
            base = sample[:-len("_count")]
            if infinite.get((base, labels)) != value:
                hidden.add((sample, labels))
                hidden.add((base + "_sum", labels))
    return hidden


class Published(NamedTuple):
    """One worker file, read, and whether its writer ran when looked at just before."""

    path: Path
    stamp: process.Stamp
    counts: list[Plain]
    health: list[Plain]
    alive: bool


class Departed(NamedTuple):
    """``departed.json``, read (empty when there is none)."""

    counts: list[Plain]
    absorbed: list[str]
    parents: list[process.Parent]


def worker_name(pid: int, connection_id: str) -> str:
    """The file name of an agent's counts in process ``pid``: one per agent and process, so
    that no agent is summed twice. The agent's connection id is fresh in every process, so a
    reused pid never writes over a dead worker's file."""
    return f"w-{pid}-{hashlib.sha256(connection_id.encode()).hexdigest()[:12]}.json"


def encode(stamp: process.Stamp, counts: list[Plain], health: list[Plain]) -> bytes:
    return _dump(stamp=list(stamp), counts=counts, health=health)


def _dump(**document: Any) -> bytes:
    return json.dumps({"v": VERSION, **document}, separators=(",", ":")).encode()


def _in_directory(method: Callable[Concatenate[Host, _P], _T]
                  ) -> Callable[Concatenate[Host, _P], _T]:
    """``method``, once more after making the directory again if it is gone (a /tmp cleaner)."""
    def again(host: Host, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return method(host, *args, **kwargs)
        except FileNotFoundError:
            if os.path.lexists(host.path):
                raise  # something else was missing
        files.recreate(host.path)
        if not host._warned_removed:
            host._warned_removed = True
            logger.warning("impactagent: the workers' directory %s was removed; made again "
                           "(the counts of workers gone before are lost: the summed "
                           "counters may go down once)", host.path)
        return method(host, *args, **kwargs)

    return again


class Host:
    """One shared directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._warned_foreign = False
        self._warned_removed = False

    @_in_directory
    def publish(self, name: str, data: bytes) -> None:
        """Replace this process's file."""
        files.replace(self.path / name, data)

    def has(self, name: str) -> bool:
        """Whether this process's file is there (a cleaner of /tmp may remove it)."""
        return os.path.lexists(self.path / name)

    @_in_directory
    def join(self, here: process.Stamp, name: str, data: bytes) -> None:
        """Publish this process's first file: a new generation if every writer here is gone,
        else fold the dead. The file is written under the lock, so that no later join can
        take a joined writer for gone."""
        with files.locked(self.path):
            departed, _, judged = self._read(here)
            parents = departed.parents + [p.stamp.started_by for p in judged]
            if (any(p.alive for p in judged)
                    or any(process.runs(parent, here) for parent in parents)):
                self._fold(here, departed, judged)
            else:  # a new generation: every file of the old one goes, departed.json last
                for path in [self.path / n for n in departed.absorbed] + [p.path for p in judged]:
                    files.remove(path)
                files.remove(self.path / DEPARTED)
                self._remove_orphaned_temporaries(here)
            files.replace(self.path / name, data)

    @_in_directory
    def gather(self, here: process.Stamp) -> tuple[Totals, Totals]:
        """Fold what is dead, then add up the departed total and every live file: the sum of
        counts, and each live worker's health."""
        with files.locked(self.path):
            departed, published, judged = self._read(here)
            if len(judged) < len(published) and not self._warned_foreign:
                self._warned_foreign = True
                logger.warning("impactagent: %s holds files from another pid namespace "
                               "(another container?): they are left out. Give each "
                               "container (each host) a directory of its own.", self.path)
            live, folded = self._fold(here, departed, judged)
        counts, health = Totals(), Totals()
        counts.add(folded, gauges=False)
        for p in sorted(live, key=lambda p: p.stamp.pid):
            counts.add(p.counts)
            health.add(p.health, extra=(("pid", str(p.stamp.pid)),))
        return counts, health

    def _read(self, here: process.Stamp) -> tuple[Departed, list[Published], list[Published]]:
        """``departed.json``, the files not folded into it, and those this process can judge."""
        departed = self._departed()
        published = self._workers(departed.absorbed, here)
        return departed, published, [p for p in published if process.judgeable(p.stamp, here)]

    def _fold(self, here: process.Stamp, departed: Departed, judged: list[Published]
              ) -> tuple[list[Published], list[Plain]]:
        """Fold the dead among ``judged``; return the live files and the departed counts."""
        live = [p for p in judged if p.alive]
        dead = [p for p in judged if not p.alive]
        if not dead and not departed.absorbed:
            return live, departed.counts
        totals = Totals()
        for counts in [departed.counts, *(p.counts for p in dead)]:
            totals.add(counts, gauges=False)
        names = [p.path.name for p in dead]
        # Names whose files are gone need no remembering: nobody can read them twice.
        kept = [n for n in departed.absorbed if (self.path / n).exists()] + names
        # The parents that still run (a gunicorn master): while one does, a join continues.
        parents = [parent for parent in dict.fromkeys(
            departed.parents + [p.stamp.started_by for p in dead])
            if process.runs(parent, here)]
        if (dead or kept != departed.absorbed) and not self._write_departed(kept, totals,
                                                                              parents):
            return judged, departed.counts
        for name in kept:
            files.remove(self.path / name)
        self._remove_orphaned_temporaries(here)
        return live, totals.plain()

    def _write_departed(self, absorbed: list[str], totals: Totals,
                        parents: list[process.Parent]) -> bool:
        try:
            files.replace(self.path / DEPARTED, _dump(
                absorbed=absorbed, counts=totals.plain(), parents=[list(p) for p in parents]))
        except OSError as error:
            logger.warning("impactagent: could not fold departed workers into %s (%s); "
                           "their files stay, and are counted as if they lived",
                           self.path / DEPARTED, error.strerror or error)
            return False
        return True

    def _departed(self) -> Departed:
        document = _load(self.path / DEPARTED) or {}
        counts, absorbed, parents = (document.get(k) for k in ("counts", "absorbed", "parents"))
        return Departed(
            counts if isinstance(counts, list) else [],
            # Only worker names: what is listed here is removed, never a path elsewhere.
            [a for a in absorbed if isinstance(a, str) and _WORKER.match(a)]
            if isinstance(absorbed, list) else [],
            [process.Parent(*p) for p in parents if _shaped(p, _PARENT)]
            if isinstance(parents, list) else [])

    def _workers(self, absorbed: list[str], here: process.Stamp) -> list[Published]:
        """The worker files not folded yet, each read after the pid in its name was looked
        at (a stamp that names another pid is no live writer's)."""
        published = []
        for path in sorted(self.path.iterdir()):
            match = _WORKER.match(path.name)
            if match is None or path.name in absorbed:
                continue
            seen = process.see(int(match.group("pid")))
            document = _load(path) or {}
            stamp, counts, health = (document.get(k) for k in ("stamp", "counts", "health"))
            if _shaped(stamp, _STAMP) and isinstance(counts, list) and isinstance(health, list):
                writer = process.Stamp(*stamp)
                published.append(Published(path, writer, counts, health,
                                           process.alive(writer, here, seen)))
        return published

    def _remove_orphaned_temporaries(self, here: process.Stamp) -> None:
        """Remove the temporary files of killed writers (call under the lock)."""
        for path in self.path.iterdir():
            match = _TEMPORARY.match(path.name)
            if match is None:
                continue
            pid = match.group("pid")
            if pid is None or (int(pid) != here.pid and not process.pid_runs(int(pid))):
                files.remove(path)


def _shaped(entry: Any, types: tuple[Any, ...]) -> TypeGuard[list[Any]]:
    """Whether ``entry`` is a list of one value of each of ``types`` (no file is trusted)."""
    return (isinstance(entry, list) and len(entry) == len(types)
            and all(isinstance(value, kind) for value, kind in zip(entry, types)))


def _load(path: Path) -> Optional[dict[str, Any]]:
    try:
        document = json.loads(files.read(path) or b"null")
    except ValueError:
        return None
    return document if isinstance(document, dict) and document.get("v") == VERSION else None
