"""``impactagent.delivery.workers``: the workers view's earlier import path, kept for code
written against it (found through ``impactagent.delivery``'s ``__path__``)."""

from impactagent.prometheus.workers import DirectoryCollector, WorkersView, serve_directory

__all__ = ["DirectoryCollector", "WorkersView", "serve_directory"]
