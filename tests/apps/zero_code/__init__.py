"""Apps that never import impactagent, for ``impactagent run`` (tests/test_run_apps.py)."""
