"""What a result was measured on: platform, Python, cores, CPU model and library versions."""

from __future__ import annotations

import json
import os
import platform
from importlib import metadata
from typing import Any, Dict

import impactagent

LIBRARIES = ("prometheus_client", "opentelemetry-sdk", "UnleashClient", "yggdrasil-engine",
             "gunicorn")


def cpu_model() -> str:
    """The first ``model name`` of /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine() -> Dict[str, Any]:
    return {
        "platform": platform.platform(), "python": platform.python_version(),
        "implementation": platform.python_implementation(), "nproc": os.cpu_count(),
        "cpu": cpu_model(), "impactagent": impactagent.__version__,
        **{name: version(name) for name in LIBRARIES},
    }


def describe(m: Dict[str, Any]) -> str:
    """One line for the top of a report."""
    libraries = ", ".join(f"{name} {m[name]}" for name in LIBRARIES)
    return (f"{m['platform']}, {m['implementation']} {m['python']}, {m['nproc']} cores "
            f"({m['cpu']}); impactagent {m['impactagent']}, {libraries}")


def write_json(path: str, results: Any) -> None:
    """Write ``results`` (every repeat of every row) as indented JSON to ``path``."""
    with open(path, "w") as handle:
        json.dump(results, handle, indent=2)
        handle.write("\n")
