"""Prometheus pull: the agent's running totals, read by a scrape.

:mod:`.collector` is one process's view (a ``prometheus_client`` collector and its
endpoints); :mod:`.workers` is one view summed across worker processes. Both read the
recording core and change nothing that :mod:`impactagent.delivery` pushes to Unleash; the
names and escaping they share with the development receiver are in
:mod:`impactagent.core.exposition_text`. Needs the ``prometheus`` extra.
"""
