"""Zero-code instrumentation: ``impactagent run [--dry-run] -- <command> [args...]``.

The command runs with :mod:`bootstrap <impactagent.autoinstrument.bootstrap>` first on
``PYTHONPATH``; each Python process it starts instruments the libraries the app imports,
with one agent per process from the environment. See ``docs/zero-code.md``.
"""
