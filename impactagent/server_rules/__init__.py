"""What a real unleash-server accepts, refuses and silently drops, read as its JavaScript
reads a body: for the spool's trust and the development receiver."""
