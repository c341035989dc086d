"""Prometheus pull: the agent's running totals, read by a scrape (the ``prometheus`` extra).

:mod:`.collector` is one process's view and its endpoints; :mod:`.workers` one view summed
across worker processes. Neither changes what :mod:`impactagent.delivery` pushes to Unleash.
"""
