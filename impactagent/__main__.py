"""``python -m impactagent``: the command line."""

from .cli import main

raise SystemExit(main())
