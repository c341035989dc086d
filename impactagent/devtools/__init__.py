"""Development tools: the receiver and its views, the demo, the pytest plugin."""
