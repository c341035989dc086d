"""Push to Unleash: settings, transport, the flusher, the spool and the agent's lifecycle."""
