"""One Prometheus view across worker processes: each publishes, any scrape sums.

Under gunicorn, uWSGI or ``multiprocessing`` every worker has its own agent and its own
counts (after a fork the child starts at zero: :mod:`impactagent.delivery.lifecycle`). A
``/metrics`` in each worker answers with whichever worker took the scrape, so counters jump
and seem to reset. Here every worker publishes its cumulative view to a small file of its
own in one directory per host, and whoever scrapes adds the files up::

    view = agent.prometheus_workers()          # in the module every worker imports
    app.mount("/metrics", view.wsgi_app())     # any worker answers with the sum

Why files per process, and not the alternatives:

- **Not memory-mapped files** (``prometheus_client``'s multiprocess mode): that mode needs
  its directory named by an environment variable before ``prometheus_client`` is imported,
  makes every ``inc()`` write into a shared mapping, supports no custom collectors, and
  leaves wiping the directory between runs to the user. Here recording is untouched (it
  stays the agent's in-memory counts); a worker writes a few kB once a second, and only
  when something changed.
- **Not a socket to a collector process**: someone must start that process, restart it, and
  decide what a worker does while it is down; a counter held only in its memory is lost
  when it dies. A directory needs no process of its own, and what a dead worker counted is
  still on disk for the next scrape to fold.
- **Whole-file atomic replace** (write a temporary file, ``rename`` over the old one): a
  reader sees a worker's previous view or its new one, never a mix; each worker's counts
  only grow, so no scrape ever shows less than one before it, whichever worker answers.

Failure modes, and what each does to the sum:

- *A worker exits, or is killed with* ``kill -9``: its file stays. The next scrape (or the
  next worker to join) sees that its pid no longer runs and **folds** the file into
  ``departed.json`` under the directory's ``flock`` lock; counters keep what it counted.
  ``kill -9`` loses only what it counted since its last publish (at most
  ``publish_interval``); a normal exit publishes once more.
- *pid reuse*: a file is stamped with its writer's start time (``/proc``) and the boot id,
  so a new process with a dead worker's pid does not keep that worker "alive"; and file
  names carry a token, so it never writes over the dead worker's file.
- *A fold interrupted* (``kill -9`` mid-fold, a full disk): ``departed.json`` lists the
  files it absorbed, is written before they are removed, and readers skip what it lists:
  a file is never counted twice, and one that could not be folded is summed as if live.
- *Disk full*: a worker's publish fails (logged once); its file keeps its earlier counts,
  so the sum lags, never drops. Recording and delivery to Unleash are not affected.
- *Stale files from a previous deploy*: the first process to publish into a directory
  where no writer runs, and none was started by a process that still runs (a gunicorn
  master whose worker was killed), starts a **new generation**: the old files go and the
  counters start at zero, as they do for any restarted process. ``departed.json`` remembers
  the parents of the workers folded into it, so a master whose only worker died (and was
  folded by a scrape) before its replacement joined still continues the totals.
- *The directory removed* (a cleaner of ``/tmp``, an operator): the next publish or scrape
  makes it again (``0700``, owned by this user, never through a symlink; logged once) and
  every live worker publishes its whole counts again; what the departed total held is lost.
- *Another container sharing the directory*: its pids mean nothing here, so its files are
  left out (with a warning), never folded or removed. Use one directory per host.
- *A stopped holder of the lock* (SIGSTOP): scrapes wait at most 5 s, then fail, rather
  than hang.

What the sum shows: counters, histograms and flag counts added up over live workers and the
departed total; gauges added up over live workers only; the agent's own health series
(recorded, delivered, dropped, pending...) per worker, with a ``pid`` label, since each
worker delivers to Unleash on its own.

The directory is chosen when the view is made: by the caller, or by default
``<tmp>/impactagent-<uid>/prometheus-<app>-<environment>-<digest>`` (``0700``; refused if another
user owns it). No environment variable, nothing to set before an import.
"""

from .view import DirectoryCollector, WorkersView, serve_directory

__all__ = ["DirectoryCollector", "WorkersView", "serve_directory"]
