"""Development tools: the server imitation (a receiver that takes, stores and shows bodies as
unleash-server does, by :mod:`impactagent.server_rules`), ``check``, the demo, the pytest
plugin."""
