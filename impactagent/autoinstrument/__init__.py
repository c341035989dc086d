"""Zero-code instrumentation: ``impactagent run [--dry-run] -- <command> [args...]``. Each
Python process the command starts instruments the libraries the app imports, with one agent
per process from the environment (``docs/zero-code.md``)."""
