"""The workers view's earlier import path, kept for code written against it: it moved to
:mod:`impactagent.prometheus.workers`."""

from ..prometheus.workers import DirectoryCollector, WorkersView, serve_directory

__all__ = ["DirectoryCollector", "WorkersView", "serve_directory"]
