"""What a transport is: the one seam between delivery and the network.

Anything with ``post(body: bytes, timeout: float) -> Outcome`` is a transport
(``Agent(..., transport=obj)``): it carries one body and says what became of it; delivery
decides the rest. ``RETRY`` keeps the data, ``DELIVERED`` settles it, ``REJECTED`` drops it
(counted), ``UNAUTHORIZED`` stops sending, ``TOO_LARGE`` splits it. The optional hooks
(``metrics_url``, ``close()``, ``reset_after_fork(identity)``, and ``register`` with
``register_url`` to register the instance) default as in :class:`BaseTransport`.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, NamedTuple, Optional, Protocol, Set, runtime_checkable

from ..core.payload import Identity

logger = logging.getLogger(__name__)

#: What to do with a body after one attempt.
DELIVERED = "delivered"  # 2xx: the server has it
RETRY = "retry"  # network trouble, 3xx, 404, 408, 429, 5xx: keep the data, try again later
REJECTED = "rejected"  # 400: the server will never take it; drop it, counted
UNAUTHORIZED = "unauthorized"  # 401/403: stop sending until reconfigured
TOO_LARGE = "too_large"  # 413: split it and send the halves


class Outcome(NamedTuple):
    """The result of one POST: its class, the status (None without an answer) and why."""

    kind: str
    status: Optional[int] = None
    retry_after: Optional[float] = None
    detail: str = ""
    #: True when the request may have reached the server although no answer came back (a
    #: read timeout or a connection lost after sending): a retry could count it twice.
    maybe_delivered: bool = False


@runtime_checkable
class Sender(Protocol):
    """The least a user's transport must have: one POST, its outcome."""

    def post(self, body: bytes, timeout: float) -> Outcome:
        """Send ``body`` within about ``timeout`` seconds; say what became of it."""
        ...


@runtime_checkable
class Transport(Sender, Protocol):
    """What delivery calls on a transport (:func:`as_transport` completes a :class:`Sender`)."""

    @property
    def metrics_url(self) -> str:
        """Where bodies go, as it may be shown in a log line (nothing secret)."""
        ...

    def close(self) -> None:
        """The agent is closed: release what the transport holds."""
        ...

    def reset_after_fork(self, identity: Identity) -> None:
        """In a forked child: stop sharing the parent's connections; ``identity`` is the
        child's (a new connection id)."""
        ...


@runtime_checkable
class Registrar(Protocol):
    """A transport that can also register the instance (``POST {url}/client/register``)."""

    @property
    def register_url(self) -> Optional[str]:
        """Where registrations go, as it may be shown (None: this one cannot register)."""
        ...

    def register(self, body: bytes, timeout: float) -> Outcome:
        """Send one registration body, as :meth:`Sender.post` sends metrics."""
        ...


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
        """Nothing to release by default."""

    def reset_after_fork(self, identity: Identity) -> None:
        """Nothing shared with the parent by default."""

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


#: The longest wait a transport's ``retry_after`` may ask for, as HttpTransport caps a
#: server's ``Retry-After``: a larger one (or infinity) from a user's transport is cut to it.
MAX_RETRY_AFTER = 3600.0
KINDS = frozenset({DELIVERED, RETRY, REJECTED, UNAUTHORIZED, TOO_LARGE})
#: Characters of a wrong answer's repr that are told.
_ANSWER_SHOWN = 100

#: What a transport says is passed through this before anything logs or counts it.
Redact = Callable[[str], str]


def is_redirect(status: Optional[int]) -> bool:
    """A 3xx: never followed (see :mod:`impactagent.delivery.transport`)."""
    return status is not None and 300 <= status < 400


def checked(call: Callable[[], Outcome], transport: object, said: Set[str],
            redact: Optional[Redact] = None) -> Outcome:
    """``call()`` (a transport's ``post`` or ``register``), held to the protocol.

    An exception (but Ctrl-C and ``SystemExit``) is a retryable failure that may have been
    delivered (it may come after the body left), an answer that is not an :class:`Outcome` a
    retryable failure; a malformed status, detail or ``retry_after`` is left out or bounded;
    each kind of problem is logged once per ``said``. What the transport says goes through
    ``redact`` first (a user's transport may quote the token); without it only type names are
    told.
    """
    try:
        outcome = call()
    except (KeyboardInterrupt, SystemExit):
        raise  # the app's own (Ctrl-C, a signal handler's exit): it decides
    except BaseException as error:
        # BaseException too: gevent's and eventlet's Timeout are one, and escaping from
        # the sending thread into the flusher's it would end the flusher for good.
        _say_once(transport, said, "raised", f"raised {told(error, redact)}")
        return Outcome(RETRY, detail=f"the transport raised {type(error).__name__}",
                       maybe_delivered=True)
    if not (isinstance(outcome, Outcome) and isinstance(outcome.kind, str)
            and outcome.kind in KINDS):
        answer = (f"{redact(repr(outcome)):.{_ANSWER_SHOWN}}" if redact is not None
                  else f"a {type(outcome).__name__}")
        _say_once(transport, said, "garbage", f"returned {answer}, not an Outcome")
        return Outcome(RETRY, detail="the transport's answer was not an Outcome")
    return _well_formed(outcome, transport, said, redact)


def _well_formed(outcome: Outcome, transport: object, said: Set[str],
                 redact: Optional[Redact]) -> Outcome:
    """``outcome`` with what is malformed around its kind left out (the kind alone decides
    what became of the body), ``retry_after`` bounded and ``detail`` redacted."""
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
    return outcome._replace(status=status, detail=detail,
                            retry_after=_bounded_wait(outcome.retry_after))


def _bounded_wait(wait: object) -> Optional[float]:
    """A ``retry_after`` in (0, MAX_RETRY_AFTER]; None when it asks for no wait (NaN too)."""
    if not isinstance(wait, (int, float)) or not wait > 0:
        return None
    return wait if wait <= MAX_RETRY_AFTER else MAX_RETRY_AFTER


def told(error: BaseException, redact: Optional[Redact]) -> str:
    """What a user's transport raised, safe to log: its type, and its message through
    ``redact`` (only the type without one). Never a traceback: it repeats the message."""
    message = redact(str(error)) if redact is not None else ""
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def _say_once(transport: object, said: Set[str], problem: str, what: str,
              then: str = "the body is kept and retried") -> None:
    if problem not in said:
        said.add(problem)
        # The user's class, not the wrapper that completes a bare Sender.
        named = transport.sender if isinstance(transport, _Completed) else transport
        logger.error("the transport %s %s; %s (said once)", type(named).__name__, what, then)


def as_transport(candidate: Any) -> Transport:
    """``candidate`` as a full :class:`Transport`, or a ``TypeError`` that says what is
    missing. An object with every hook is used as it is (so it may also register); one
    with only ``post`` gets the defaults of :class:`BaseTransport`."""
    if isinstance(candidate, type):
        raise TypeError(f"transport must be an instance, not the class "
                        f"{candidate.__name__}: write transport={candidate.__name__}(...)")
    if not callable(getattr(candidate, "post", None)):
        raise TypeError(
            f"transport must have a method post(body: bytes, timeout: float) -> Outcome; "
            f"{type(candidate).__name__} has none (see impactagent.delivery.transport_api)")
    if isinstance(candidate, Transport):
        return candidate
    return _Completed(candidate)


__all__ = (
    "DELIVERED",
    "MAX_RETRY_AFTER",
    "REJECTED",
    "RETRY",
    "TOO_LARGE",
    "UNAUTHORIZED",
    "BaseTransport",
    "Outcome",
    "Registrar",
    "Sender",
    "Transport",
    "as_transport",
    "checked",
    "is_redirect",
    "told",
)
