"""``@agent.flag(name)``: count every call of the function that decides a flag.

What the function returns says what was decided; :func:`evaluation` reads it:

- a bool, or anything else truthy or falsy (``None`` is "no"): yes or no, no variant;
- a variant's name (``str``): that variant, and yes unless it is ``"disabled"``;
- an Unleash variant dict ``{"name", "enabled", "feature_enabled"}`` or an object with
  ``name`` and ``enabled`` (``feature_enabled`` wins when present: a disabled variant of an
  enabled flag is still a yes, as the Unleash SDKs count it).

The decorated function's result, signature and metadata are unchanged; ``async def``
functions stay coroutine functions. A call that raises is neither yes nor no: nothing was
decided, and the exception goes on.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Optional, Tuple, TypeVar

from .flags import NOT_VARIANT_NAMES, variant_name

F = TypeVar("F", bound=Callable[..., Any])
Record = Callable[[str, bool, Optional[str]], None]


def evaluation(result: Any) -> Tuple[bool, Optional[str]]:
    """``(enabled, variant)`` for what a flag function returned.

    >>> evaluation(True), evaluation(None), evaluation("blue"), evaluation("disabled")
    ((True, None), (False, None), (True, 'blue'), (False, 'disabled'))
    >>> evaluation({"name": "disabled", "enabled": False, "feature_enabled": True})
    (True, 'disabled')
    >>> evaluation(""), evaluation({"name": "", "enabled": True}), evaluation("toString")
    ((False, None), (True, None), (True, None))
    """
    if result is True or result is False:
        return result, None
    if isinstance(result, str):
        if result.__class__ is not str:  # a str Enum: its text, which record_flag counts
            result = str.__str__(result)
        # "" is falsy; it and the names Unleash does not store as a variant's name none.
        if not result:
            return False, None
        return result != "disabled", None if result in NOT_VARIANT_NAMES else result
    if isinstance(result, dict) and isinstance(result.get("name"), str):
        enabled = result.get("feature_enabled", result.get("enabled", True))
        return bool(enabled), variant_name(result["name"])
    name = getattr(result, "name", None)
    if isinstance(name, str) and hasattr(result, "enabled"):
        return bool(getattr(result, "feature_enabled", result.enabled)), variant_name(name)
    return bool(result), None


def flag_decorator(name: str, count_evaluation: Record) -> Callable[[F], F]:
    """The decorator behind ``agent.flag(name)``: ``count_evaluation(name, enabled,
    variant)`` counts each answer and notes its state in the flag scope."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"@flag() takes a non-empty flag name, got {name!r}")

    def count(result: Any) -> Any:
        count_evaluation(name, *evaluation(result))
        return result

    def decorate(func: F) -> F:
        if not callable(func):
            raise TypeError(f"@flag({name!r}) decorates a function, got {func!r}")
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                return count(await func(*args, **kwargs))

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return count(func(*args, **kwargs))

        return wrapper  # type: ignore[return-value]

    return decorate
