"""``module:attribute``: how a command, a framework's settings and the gunicorn hook name an
object of the app, such as its Agent. One rule for all three: an absolute module name, and
an attribute that may be dotted (``shop.metrics:registry.agent``)."""

from __future__ import annotations

import importlib
from typing import Any, Callable


class NotAReference(ValueError):
    """Not an absolute ``module:attribute`` (nothing was imported)."""


class NoSuchAttribute(LookupError):
    """The module has no such attribute."""


class AttributeFailed(LookupError):
    """Reading the attribute raised something else (a property, a module ``__getattr__`` or a
    framework's lazy settings failed): the app's own error, kept as ``__cause__``."""


def resolve(reference: str,
            module: Callable[[str], Any] = importlib.import_module) -> Any:
    """The object ``reference`` names, in the module that ``module(name)`` gives (importing
    it, unless told otherwise). Whatever ``module`` raises passes on; what reading the
    attribute raises comes as :class:`AttributeFailed`. The two errors of the reference
    itself have messages that follow the name of the option or setting it came from
    (``--agent takes MODULE:NAME...``)."""
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise NotAReference(f"takes MODULE:NAME, such as myapp.metrics:agent; "
                            f"got {reference!r}")
    if module_name.startswith(".") or module_name.endswith(".") or ".." in module_name:
        raise NotAReference(f"needs an absolute module name such as myapp.metrics; "
                            f"got {module_name!r}")
    found: Any = module(module_name)
    try:
        for name in attribute.split("."):
            found = getattr(found, name)
    except AttributeError:
        raise NoSuchAttribute(f"module {module_name} has no {attribute!r}") from None
    except (Exception, SystemExit) as error:  # the app's code ran on reading it: its error
        raise AttributeFailed(f"reading {attribute} from module {module_name} failed") from error
    return found
