"""Development tools: the receiver (a server imitation), ``check``, the demo, the pytest
plugin."""
