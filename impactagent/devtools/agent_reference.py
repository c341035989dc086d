"""``MODULE:NAME``: how a command finds the app's :class:`~impactagent.Agent`, imported from
the current directory as ``python -m`` would; every miss is a one-line ``UsageError``.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from types import ModuleType

from ..agent import Agent
from ..core.reference import AttributeFailed, NoSuchAttribute, NotAReference, resolve
from .cli_support import UsageError


def load_agent(where: str, option: str = "--agent") -> Agent:
    """The agent that ``where`` (``package.module:name``) names; ``option`` for the messages."""
    try:
        agent = resolve(where, lambda module_name: _import(module_name, where, option))
    except NotAReference as error:
        raise UsageError(f"{option} {error}") from None
    except NoSuchAttribute as error:
        raise UsageError(f"{option} {where}: {error}") from None
    except AttributeFailed as error:
        raise UsageError(f"{option} {where}: {error}: {one_line(error.__cause__ or error)}"
                         ) from None
    if not isinstance(agent, Agent):
        raise UsageError(f"{option} {where} is a {type(agent).__name__}, not an "
                         "impactagent.Agent")
    return agent


def _import(module_name: str, where: str, option: str) -> ModuleType:
    """``module_name`` imported from the current directory; every failure in one line."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(module_name)
    except Exception as error:  # the app's code raised: where, in one line
        missing = (error.name or "") if isinstance(error, ModuleNotFoundError) else ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            raise UsageError(f"{option} {where}: no module named {missing!r} here; run from "
                             "your app's directory, or add it to PYTHONPATH") from None
        raise UsageError(f"{option} {where}: importing {module_name} failed: "
                         f"{one_line(error)}") from None
    except SystemExit as error:  # the module exits on import (a script, not a module)
        raise UsageError(f"{option} {where}: importing {module_name} called sys.exit"
                         f"({error.code!r}); name a module that defines the agent without "
                         "running the app") from None


def one_line(error: BaseException) -> str:
    """``Type: message (file, line n)``, at the innermost frame of the app's own code."""
    frames = traceback.extract_tb(error.__traceback__)
    here = os.getcwd() + os.sep
    mine = [f for f in frames if f.filename.startswith(here)] or frames[-1:]
    where = f" ({mine[-1].filename}, line {mine[-1].lineno})" if mine else ""
    return " ".join(f"{type(error).__name__}: {error}{where}".split())
