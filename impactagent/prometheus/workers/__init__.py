"""One Prometheus view across worker processes: each publishes, any scrape sums.

Under gunicorn, uWSGI or ``multiprocessing`` each worker has its own counts, so a
``/metrics`` in each worker answers with whichever worker took the scrape. Here every worker
publishes its cumulative view to a small file of its own in one directory per host, and
whoever scrapes adds the files up::

    view = agent.prometheus_workers()          # in the module every worker imports
    app.mount("/metrics", view.wsgi_app())     # any worker answers with the sum

Counters, histograms and flag counts are summed over live workers and the departed total
(what workers that are gone counted), so they never go down when a worker leaves; gauges
over live workers only; the agent's health series per worker, with a ``pid`` label. The
directory is the caller's, or ``<tmp>/impactagent-<uid>/prometheus-<app>-<env>-<digest>``.
"""

from .view import DirectoryCollector, WorkersView, serve_directory

__all__ = ["DirectoryCollector", "WorkersView", "serve_directory"]
