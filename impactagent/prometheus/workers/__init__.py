"""One Prometheus view across worker processes: each publishes its cumulative view to a file
of its own in one directory per host, and whoever scrapes adds the files up::

    view = agent.prometheus_workers()          # in the module every worker imports
    app.mount("/metrics", view.wsgi_app())     # any worker answers with the sum

Counters, histograms and flag counts keep what departed workers counted; gauges are summed
over live workers; health series are per worker, by ``pid``.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import multiprocessing.util
import os
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Optional, Protocol, Tuple, Union

from prometheus_client import CollectorRegistry, make_asgi_app, make_wsgi_app
from prometheus_client.metrics_core import Metric

from ...core.threads import start_thread, weak_hook
from ..collector import AgentCollector, Scraped, mark_agent_view, registry_of, serve_registry
from . import directory as files
from . import process
from .host import Host, encode, to_plain, worker_name

__all__ = ["DirectoryCollector", "WorkersView", "serve_directory"]

logger = logging.getLogger("impactagent")

# Even unchanged, a file is rewritten this often, so that a cleaner of /tmp never takes it.
_REFRESH_SECONDS = 3600.0


class DirectoryCollector:
    """A ``prometheus_client`` collector over a shared directory: the sum over its workers."""

    def __init__(self, directory: Union[str, os.PathLike[str]]) -> None:
        self.host = Host(files.prepare(directory))

    @property
    def directory(self) -> Path:
        return self.host.path

    def collect(self) -> Iterator[Metric]:
        for totals in self.host.gather(process.current()):
            for metric in totals.metrics():
                yield mark_agent_view(metric)


class Worker(Scraped, Protocol):
    """An agent as a worker's view uses it: scraped, and reset in a child forked without
    Python's hooks (:class:`impactagent.Agent` is one)."""

    def after_fork(self) -> None: ...


class WorkersView:
    """One agent's publisher into a shared directory, and its scrape of the sum; made by
    :meth:`impactagent.Agent.prometheus_workers`. One agent's counts are one file per
    process, whatever the number of its views: never summed twice."""

    def __init__(self, agent: Worker, directory: Union[str, os.PathLike[str]],
                 publish_interval: float = 1.0) -> None:
        if publish_interval <= 0:
            raise ValueError("publish_interval must be positive")
        self.agent = agent
        self.publish_interval = publish_interval
        self.collector = DirectoryCollector(directory)
        self._own = AgentCollector(agent)
        self._start_in_this_process()
        os.register_at_fork(after_in_child=weak_hook(self.after_fork))
        atexit.register(weak_hook(self.stop))
        # A multiprocessing child ends with os._exit, skipping atexit: its exit hooks publish.
        multiprocessing.util.register_after_fork(self, WorkersView._publish_when_child_ends)
        if multiprocessing.parent_process() is not None:
            self._publish_when_child_ends()
        self.publish()

    @property
    def directory(self) -> Path:
        return self.collector.directory

    def _start_in_this_process(self) -> None:
        self._pid = os.getpid()
        self._stamp = process.current()
        self._name = worker_name(self._pid, self.agent.identity.connection_id)
        self._lock = threading.Lock()
        self._joined = False
        self._last: Optional[Tuple[bytes, float]] = None
        self._failed = False
        self._stopping = threading.Event()
        self._thread = start_thread(self._run, "impactagent-workers-view")

    def publish(self) -> bool:
        """Write this process's counts to its file now; False (logged once) if the disk
        refused."""
        if os.getpid() != self._pid:
            # Forked without Python's hooks: the counts are still the parent's. The agent's
            # own reset starts the child at zero, as the hooks would have (and it calls this
            # view's after_fork, as does the line after it for a view the agent does not know).
            self.agent.after_fork()
            self.after_fork()
        with self._lock:
            data = encode(self._stamp, to_plain(self._own.counts()), to_plain(self._own.health()))
            now = time.monotonic()
            if (self._last is not None and self._last[0] == data
                    and now - self._last[1] < _REFRESH_SECONDS
                    and self.collector.host.has(self._name)):
                return True
            try:
                if self._joined:
                    self.collector.host.publish(self._name, data)
                else:
                    self.collector.host.join(self._stamp, self._name, data)
                    self._joined = True
            except (OSError, TimeoutError) as error:
                if not self._failed:
                    logger.warning("impactagent: could not publish this worker's counts to "
                                   "%s (%s); the shared view shows its earlier counts until "
                                   "it can", self.directory, error)
                self._failed = True
                return False
            self._failed = False
            self._last = (data, now)
            return True

    def _run(self) -> None:
        while not self._stopping.wait(self.publish_interval):
            try:
                self.publish()
            except Exception:  # a bug must not end the thread silently: log, go on
                logger.exception("impactagent: publishing the workers' view failed")

    def stop(self) -> None:
        """Stop the thread and publish one last time."""
        self._stopping.set()
        self.publish()

    def after_fork(self) -> None:
        """In a forked child: a file and a thread of its own (the agent's reset calls it)."""
        if os.getpid() != self._pid:
            self._start_in_this_process()

    def _publish_when_child_ends(self) -> None:
        multiprocessing.util.Finalize(None, weak_hook(self.stop), exitpriority=100)

    def collect(self) -> Iterator[Metric]:
        """The sum over the workers, this one's counts as of now."""
        self.publish()
        return self.collector.collect()

    def registry(self) -> CollectorRegistry:
        """A registry holding only this view."""
        return registry_of(self)

    def wsgi_app(self) -> Any:
        """A WSGI app serving the sum, to mount in every worker."""
        return make_wsgi_app(self.registry())

    def asgi_app(self) -> Any:
        """An ASGI app serving the sum, to mount in every worker."""
        return make_asgi_app(self.registry())

    def serve(self, port: int, addr: str = "127.0.0.1") -> Any:
        """Serve ``/metrics`` (the sum) on ``addr:port`` from a daemon thread."""
        return serve_registry(self.registry(), port, addr)[0]


def serve_directory(directory: Union[str, os.PathLike[str]], port: int, addr: str = "127.0.0.1"
                    ) -> Any:
    """Serve the sum over a directory's workers on ``addr:port`` from a process with no
    agent (the gunicorn master, in ``when_ready``; a sidecar)."""
    return serve_registry(registry_of(DirectoryCollector(directory)), port, addr)[0]
