"""What a real unleash-server accepts, refuses and silently drops, read as its JavaScript
reads a body. The agent's spool trusts only bodies that meet these rules, and the
development receiver (``impactagent.devtools``) holds every body to them."""
