"""Framework integrations: each labels requests (or tasks) by their route template and runs
each in its own flag scope. A framework is imported only when its integration is used."""
