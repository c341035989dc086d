"""``@agent.flag(name)``: count every call of the function that decides a flag, by what it
returns (:func:`evaluation`): a truthy or falsy value, a variant's name, or an Unleash variant
(dict or object). Its result, signature and metadata are unchanged; a call that raises counts
nothing."""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, TypeVar

from .flags import NOT_VARIANT_NAMES, variant_name

F = TypeVar("F", bound=Callable[..., Any])
#: ``record(name, enabled, variant=None)``, as ``Agent.record_flag``.
Record = Callable[..., None]


def evaluation(result: Any) -> tuple[bool, str | None]:
    """``(enabled, variant)`` for what a flag function returned.

    >>> evaluation("blue"), evaluation({"name": "blue", "enabled": False, "feature_enabled": True})
    ((True, 'blue'), (True, 'blue'))
    """
    if result is True or result is False:
        return result, None
    if isinstance(result, str):
        if result.__class__ is not str:  # a str Enum counts as its text
            result = str.__str__(result)
        if not result:
            return False, None
        return result != "disabled", (None if result in NOT_VARIANT_NAMES or "\x00" in result
                                      else result)
    if isinstance(result, dict) and isinstance(result.get("name"), str):
        enabled = result.get("feature_enabled", result.get("enabled", True))
        return bool(enabled), variant_name(result["name"])
    name = getattr(result, "name", None)
    if isinstance(name, str) and hasattr(result, "enabled"):
        return bool(getattr(result, "feature_enabled", result.enabled)), variant_name(name)
    return bool(result), None


def flag_decorator(name: str, record: Record) -> Callable[[F], F]:
    """The decorator behind ``agent.flag(name)``: ``record(name, enabled, variant)`` counts
    each answer."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"@flag() takes a non-empty flag name, got {name!r}")

    def decorate(func: F) -> F:
        if not callable(func):
            raise TypeError(f"@flag({name!r}) decorates a function, got {func!r}")
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                result = await func(*args, **kwargs)
                record(name, *evaluation(result))
                return result

            return async_wrapper  # type: ignore[return-value]

        return functools.wraps(func)(_forwarder(func, name, record))  # type: ignore[return-value]

    return decorate


# A bool answer, the commonest, is counted without a call to evaluation().
_WRAPPER = """
def wrapper({params}):
    _ia_result = _ia_func({args})
    if _ia_result is True or _ia_result is False:
        _ia_record(_ia_name, _ia_result)
    else:
        _ia_record(_ia_name, *_ia_evaluation(_ia_result))
    return _ia_result
"""


def _forwarder(func: Callable[..., Any], name: str, record: Record) -> Callable[..., Any]:
    """A function with exactly ``func``'s parameters (no ``*args`` tuple, no ``**kwargs``
    dict: most of what a wrapper costs) that counts its answer; other callables, or one with
    an ``_ia_`` parameter, get ``*args, **kwargs``."""
    params, args = "*args, **kwargs", ["*args", "**kwargs"]
    defaults: dict[str, Any] = {}
    signature = None
    if ((inspect.isfunction(func) or inspect.ismethod(func))
            and getattr(func, "__signature__", None) is None):
        signature = inspect.signature(func, follow_wrapped=False)
    if signature is not None and not any(p.startswith("_ia_") for p in signature.parameters):
        # inspect writes the parameter list; each default is named, so it stays func's own.
        parameters = []
        for index, p in enumerate(signature.parameters.values()):
            if p.default is not p.empty:
                defaults[f"_ia_default_{index}"] = p.default
                p = p.replace(default=_Named(f"_ia_default_{index}"))
            parameters.append(p.replace(annotation=p.empty))
        params = str(signature.replace(parameters=parameters,
                                          return_annotation=signature.empty))[1:-1]
        stars: dict[Any, str] = {inspect.Parameter.VAR_POSITIONAL: "*",
                                 inspect.Parameter.VAR_KEYWORD: "**"}
        args = [f"{p.name}={p.name}" if p.kind is p.KEYWORD_ONLY else stars.get(p.kind, "") + p.name
                for p in parameters]
    namespace = {"_ia_func": func, "_ia_name": name, "_ia_record": record,
                 "_ia_evaluation": evaluation, **defaults}
    source = _WRAPPER.format(params=params, args=", ".join(args))
    exec(compile(source, f"<@flag({name!r}) wrapper>", "exec"), namespace)
    wrapper: Callable[..., Any] = namespace["wrapper"]
    return wrapper


class _Named(str):
    """A default written by its name in the wrapper's source."""

    __repr__ = str.__str__
