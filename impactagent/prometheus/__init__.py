"""Prometheus pull (the ``prometheus`` extra): one process's view and its endpoints
(:mod:`.collector`), and one view summed across worker processes (:mod:`.workers`)."""
