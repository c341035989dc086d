"""What a transport is: anything with ``post(body: bytes, timeout: float) -> Outcome``
(``Agent(..., transport=obj)``) carries one body and says what became of it; delivery
decides the rest: ``RETRY`` keeps the data, ``DELIVERED`` settles it, ``REJECTED`` drops it
(counted), ``UNAUTHORIZED`` stops sending, ``TOO_LARGE`` splits it. The optional hooks
(``metrics_url``, ``close()``, ``reset_after_fork(identity)``, and ``register`` with
``register_url`` to register the instance) default as in :class:`BaseTransport`.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, NamedTuple, Optional, Protocol, Set, runtime_checkable

from ..core.payload import Identity

logger = logging.getLogger(__name__)

DELIVERED = "delivered"  # 2xx: the server has it
RETRY = "retry"  # network trouble, 3xx, 404, 408, 429, 5xx: keep the data, try again later
REJECTED = "rejected"  # 400: the server will never take it; drop it, counted
UNAUTHORIZED = "unauthorized"  # 401/403: stop sending until reconfigured
TOO_LARGE = "too_large"  # 413: split it and send the halves
KINDS = frozenset({DELIVERED, RETRY, REJECTED, UNAUTHORIZED, TOO_LARGE})

MAX_RETRY_AFTER = 3600.0  # the longest wait a server's or a transport's retry_after gets
_ANSWER_SHOWN = 100  # characters of a wrong answer's repr that are told

#: What a transport says is passed through this before anything logs or counts it.
Redact = Callable[[str], str]


class Outcome(NamedTuple):
    """The result of one POST: its kind, the status (None without an answer) and why."""

    kind: str
    status: Optional[int] = None
    retry_after: Optional[float] = None
    detail: str = ""
    #: The request may have reached the server although no answer said so: a retry could
    #: count it twice.
    maybe_delivered: bool = False


@runtime_checkable
class Sender(Protocol):
    """The least a user's transport must have: one POST, its outcome."""

    def post(self, body: bytes, timeout: float) -> Outcome:
        """Send ``body`` within about ``timeout`` seconds; say what became of it."""


@runtime_checkable
class Transport(Sender, Protocol):
    """What delivery calls on a transport (:func:`as_transport` completes a :class:`Sender`)."""

    @property
    def metrics_url(self) -> str:
        """Where bodies go, as it may be shown in a log line (nothing secret)."""

    def close(self) -> None:
        """The agent is closed: release what the transport holds."""

    def reset_after_fork(self, identity: Identity) -> None:
        """In a forked child: stop sharing the parent's connections (``identity`` is new)."""


@runtime_checkable
class Registrar(Protocol):
    """A transport that can also register the instance (``POST {url}/client/register``)."""

    @property
    def register_url(self) -> Optional[str]:
        """Where registrations go, as it may be shown (None: this one cannot register)."""

    def register(self, body: bytes, timeout: float) -> Outcome:
        """Send one registration body, as :meth:`Sender.post` sends metrics."""


class BaseTransport:
    """A transport to subclass: write :meth:`post`; the other hooks default to nothing.

    >>> class ToList(BaseTransport):
    ...     def __init__(self) -> None:
    ...         self.bodies: list = []
    ...     def post(self, body: bytes, timeout: float) -> Outcome:
    ...         self.bodies.append(body)
    ...         return Outcome(DELIVERED, 200)
    >>> ToList().metrics_url
    'ToList'
    """

    @property
    def metrics_url(self) -> str:
        return type(self).__name__

    def post(self, body: bytes, timeout: float) -> Outcome:
        raise NotImplementedError("a transport must define post(body, timeout) -> Outcome")

    def close(self) -> None:
        pass

    def reset_after_fork(self, identity: Identity) -> None:
        pass

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.metrics_url}>"


class _Completed(BaseTransport):
    """A bare :class:`Sender` with the optional hooks it lacks filled in by default."""

    def __init__(self, sender: Sender) -> None:
        self.sender = sender
        where = getattr(sender, "metrics_url", None)
        self.where = where if isinstance(where, str) else type(sender).__name__

    @property
    def metrics_url(self) -> str:
        return self.where

    def post(self, body: bytes, timeout: float) -> Outcome:
        return self.sender.post(body, timeout)

    def close(self) -> None:
        close = getattr(self.sender, "close", None)
        if callable(close):
            close()

    def reset_after_fork(self, identity: Identity) -> None:
        reset = getattr(self.sender, "reset_after_fork", None)
        if callable(reset):
            reset(identity)


def is_redirect(status: Optional[int]) -> bool:
    """A 3xx: never followed (see :mod:`impactagent.delivery.transport`)."""
    return status is not None and 300 <= status < 400


def checked(call: Callable[[], Outcome], transport: object, said: Set[str],
            redact: Optional[Redact] = None) -> Outcome:
    """``call()`` (a transport's ``post`` or ``register``) held to the protocol: a raise or a
    wrong answer becomes a retryable outcome, logged once per kind in ``said``; what it says
    goes through ``redact`` (without it, only type names are told)."""
    try:
        outcome = call()
    except (KeyboardInterrupt, SystemExit):
        raise  # the app's own: it decides
    except BaseException as error:
        # gevent's and eventlet's Timeout are BaseExceptions: one escaping into the
        # flusher's thread would end it for good. It may come after the body left.
        _say_once(transport, said, "raised", f"raised {told(error, redact)}")
        return Outcome(RETRY, detail=f"the transport raised {type(error).__name__}",
                       maybe_delivered=True)
    if not (isinstance(outcome, Outcome) and isinstance(outcome.kind, str)
            and outcome.kind in KINDS):
        answer = (f"{redact(repr(outcome)):.{_ANSWER_SHOWN}}" if redact is not None
                  else f"a {type(outcome).__name__}")
        _say_once(transport, said, "garbage", f"returned {answer}, not an Outcome")
        return Outcome(RETRY, detail="the transport's answer was not an Outcome")
    status = outcome.status if type(outcome.status) is int else None
    detail = outcome.detail if isinstance(outcome.detail, str) else ""
    if status is not outcome.status or detail is not outcome.detail:
        _say_once(transport, said, "malformed",
                  f"returned an Outcome whose status ({type(outcome.status).__name__}) or "
                  f"detail ({type(outcome.detail).__name__}) is malformed",
                  then="they are left out, and its kind taken as it is")
    if outcome.kind == UNAUTHORIZED and status is None:
        status = 401  # it stops sending, and says by what
    if detail and redact is not None:
        detail = redact(detail)
    wait = outcome.retry_after
    if not isinstance(wait, (int, float)) or not wait > 0:  # NaN too
        wait = None
    return outcome._replace(status=status, detail=detail,
                            retry_after=None if wait is None else min(wait, MAX_RETRY_AFTER))


def told(error: BaseException, redact: Optional[Redact]) -> str:
    """What a user's transport raised, safe to log: its type, and its message through
    ``redact`` (only the type without one). Never a traceback: it repeats the message."""
    message = redact(str(error)) if redact is not None else ""
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def _say_once(transport: object, said: Set[str], problem: str, what: str,
              then: str = "the body is kept and retried") -> None:
    if problem not in said:
        said.add(problem)
        named = transport.sender if isinstance(transport, _Completed) else transport
        logger.error("the transport %s %s; %s (said once)", type(named).__name__, what, then)


def as_transport(candidate: Any) -> Transport:
    """``candidate`` as a full :class:`Transport`, or a ``TypeError`` that says what is
    missing; one with only ``post`` gets the defaults of :class:`BaseTransport`."""
    if isinstance(candidate, type):
        raise TypeError(f"transport must be an instance, not the class "
                        f"{candidate.__name__}: write transport={candidate.__name__}(...)")
    if not callable(getattr(candidate, "post", None)):
        raise TypeError(
            f"transport must have a method post(body: bytes, timeout: float) -> Outcome; "
            f"{type(candidate).__name__} has none (see impactagent.delivery.transport_api)")
    return candidate if isinstance(candidate, Transport) else _Completed(candidate)


__all__ = ("DELIVERED", "MAX_RETRY_AFTER", "REJECTED", "RETRY", "TOO_LARGE", "UNAUTHORIZED",
           "BaseTransport", "Outcome", "Registrar", "Sender", "Transport", "as_transport",
           "checked", "is_redirect", "told")
