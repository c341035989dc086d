"""One Prometheus view across worker processes: each publishes its cumulative view to a file
of its own in one directory per host, and whoever scrapes adds the files up::

    view = agent.prometheus_workers()          # in the module every worker imports
    app.mount("/metrics", view.wsgi_app())     # any worker answers with the sum

Counters, histograms and flag counts include what departed workers counted, so they never go
down; gauges are summed over live workers; health series are per worker, by ``pid``.
"""

from .view import DirectoryCollector, WorkersView, serve_directory

__all__ = ["DirectoryCollector", "WorkersView", "serve_directory"]
