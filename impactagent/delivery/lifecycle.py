"""Start, flush, close, exit, SIGTERM and fork: the agent's life, and the parts it owns.

``atexit`` closes the agent (a ``multiprocessing`` child through multiprocessing's exit
hooks); SIGTERM, which runs no ``atexit`` hook, closes every started agent within its
``shutdown_timeout`` on a thread of its own and then ends the process as it would have (an
app's own handler is left alone). An app's ``flush()`` and ``close()`` run on an agent thread
too: a signal handler, which runs on the main thread, never cuts the agent's work short.
After ``fork()`` the child starts with zero counts, new locks, session and connection id,
and its own flusher if the parent had one; no log handler is held mid-write across it.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import multiprocessing
import multiprocessing.util
import os
import signal
import threading
import time
import uuid
import weakref
from functools import partial
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..core.payload import Identity, environment_from_token
from ..core.recorder import Recorder
from ..core.statistics import DeliveryLedger
from ..core.threads import start_thread, weak_hook
from .deadline import start_or_run
from .delivery import Delivery, FlushResult
from .flusher import Flusher
from .redaction import Redactor
from .registration import Registration, not_registering
from .settings import Settings
from .transport import HttpTransport
from .transport_api import Registrar, as_transport

logger = logging.getLogger(__name__)


class Lifecycle:
    """The delivery side of one agent: transport, spool, flusher, and their hooks.
    ``transport`` replaces the default :class:`HttpTransport` (then no ``url`` is needed)."""

    def __init__(self, settings: Settings, recorder: Recorder,
                 transport: Optional[object] = None) -> None:
        supplied = None if transport is None else as_transport(transport)  # before any hook
        self.settings = settings
        self.recorder = recorder
        environment = environment_from_token(settings.api_key, settings.environment)
        self.identity = Identity.create(settings.app_name, environment, settings.instance_id)
        self.ledger = DeliveryLedger()
        self._lock = threading.Lock()  # start/close/fork against each other
        self._closed: Optional[FlushResult] = None
        self._pid = os.getpid()
        self.spool = None
        self.delivery: Optional[Delivery] = None
        self.flusher: Optional[Flusher] = None
        self.registration: Optional[Registration] = None
        self.redact = Redactor.for_credentials(settings.api_key, settings.headers)
        self.registrar: Optional[Registrar] = None
        # Every agent, with a url or not: a child must never report its parent's counts.
        os.register_at_fork(after_in_child=weak_hook(self.after_fork_in_child))
        if settings.metrics_url is None and supplied is None:
            return
        if settings.spool_dir is not None:
            from .spool import DEFAULT_LEASE_SECONDS, Spool

            lease = max(DEFAULT_LEASE_SECONDS, 4 * settings.request_timeout)
            self.spool = Spool(settings.spool_dir, max_bytes=settings.spool_max_bytes,
                               drops=recorder.drops, lease_seconds=lease)
        chosen = supplied
        if chosen is None:
            assert settings.metrics_url is not None  # checked above
            chosen = HttpTransport(
                settings.metrics_url, settings.api_key or "", self.identity,
                flush_interval=settings.flush_interval, headers=settings.headers,
                verify=settings.verify, proxies=settings.proxies)
        if (settings.register and isinstance(chosen, Registrar)
                and chosen.register_url is not None):
            self.registrar = chosen
        self.delivery = Delivery(
            recorder, chosen, identity=self.identity, request_timeout=settings.request_timeout,
            max_payload_bytes=settings.max_payload_bytes, ledger=self.ledger, drops=recorder.drops,
            spool=self.spool, redact=self.redact)
        multiprocessing.util.register_after_fork(self, Lifecycle._close_when_child_ends)

    def start(self) -> None:
        if self.delivery is None:
            raise RuntimeError("this agent has no url: it records, but has nowhere to send")
        with self._lock:
            if self._closed is not None:
                raise RuntimeError("this agent was closed; create a new one to send again")
            if self.flusher is None:
                if self.settings.metrics_url is not None:
                    _import_what_delivery_needs(self.settings.metrics_url)
                if self.registrar is not None:
                    self.registration = Registration(
                        self.registrar, identity=self.identity,
                        interval=self.settings.flush_interval, refusals=self.delivery.refusals,
                        redact=self.redact)
                self.flusher = Flusher(self.delivery, self.settings.flush_interval,
                                       self.registration)
                # Now: the close at exit needs it, and Python 3.12 starts no thread at exit.
                self.delivery.calls.start()
                self.flusher.start()
                atexit.register(weak_hook(self.close_at_exit))
                if self.settings.handle_sigterm:
                    _enroll(self)
                if multiprocessing.parent_process() is not None:
                    self._close_when_child_ends()

    def flush(self, timeout: float) -> FlushResult:
        _check_timeout(timeout)
        delivery = self.delivery
        if delivery is None:
            return FlushResult(skipped="no url configured")
        deadline, interrupt = time.monotonic() + timeout, threading.Event()
        return _on_an_agent_thread(lambda: delivery.flush(deadline, interrupt), deadline,
                                   "impactagent-flush", stop=interrupt.set)

    def hurry(self) -> None:
        """SIGTERM came: a flush running now ends at once; a close within its timeout."""
        if self.delivery is not None:
            self.delivery.hurry(self.settings.shutdown_timeout)

    def close(self, timeout: float) -> FlushResult:
        _check_timeout(timeout)
        return _on_an_agent_thread(lambda: self.close_now(timeout), time.monotonic() + timeout,
                                   "impactagent-close", stop=self.hurry)

    def close_now(self, timeout: float) -> FlushResult:
        """Close on this thread: at exit (a thread started now would be cut off if Ctrl-C
        ended the wait for it; Python 3.12 starts none) and on SIGTERM's closing thread."""
        deadline = time.monotonic() + timeout
        # A close still running (one Ctrl-C stopped waiting for) ends by its own deadline.
        if not self._lock.acquire(timeout=timeout + _OVERRUN_SECONDS):
            return FlushResult(timed_out=True, skipped="another close is still running")
        try:
            if self._closed is not None:
                if self.delivery is not None:  # what was recorded since: spooled or counted
                    self.delivery.abandon()
                return self._closed
            if self.delivery is None:
                self._closed = FlushResult(skipped="no url configured")
                return self._closed
            if self.flusher is not None:
                self.flusher.stop(0)  # cut its retry waits short; delivery waits for it
            self._closed = FlushResult(skipped="close was interrupted")  # until it ends
            try:
                result = self.delivery.close(deadline)
            except Exception:  # a bug must not escape close(), least of all at exit
                logger.exception("closing failed")
                result = FlushResult(skipped="closing failed (see the log)")
            except BaseException as interruption:  # at exit, run on the app's thread
                logger.error("close() was interrupted (%s); what it still held was spooled "
                             "or counted as dropped", type(interruption).__name__)
                raise
            if self.flusher is not None:
                # Nothing its registration logs or settles comes after close() returns.
                self.flusher.stop(deadline - time.monotonic())
            self._closed = result
            return result
        finally:
            self._lock.release()

    def abandon(self) -> None:
        """The process ends now: what delivery has not settled is spooled or counted."""
        if self.delivery is not None:
            self.delivery.abandon()

    def close_at_exit(self) -> None:
        # Even when a close has begun on another thread: the exit waits for it (bounded).
        if self.flusher is not None:
            self.close_now(self.settings.shutdown_timeout)

    def after_fork_in_child(self) -> None:
        """Reset everything a forked child must not share with its parent."""
        if os.getpid() == self._pid:
            return  # already done (by hand as well as by the hook)
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self.recorder.reset_after_fork()
        self.ledger = DeliveryLedger()
        self.identity = self.identity._replace(connection_id=str(uuid.uuid4()))
        if self.delivery is None:
            return
        self.delivery.reset_after_fork(self.ledger, self.identity)
        if not self.delivery.closed:  # a close another thread was running is the parent's
            self._closed = None
        if self.spool is not None:
            self.spool.reset_after_fork()
        was_flushing = self.flusher is not None and self._closed is None
        self.flusher = None
        self.registration = None  # the child's own, made when its flusher starts
        if was_flushing:
            self.start()

    def _close_when_child_ends(self) -> None:
        """In a ``multiprocessing`` child: close when it ends normally (it ends with
        ``os._exit``, so atexit alone would never close this agent)."""
        _leave_to_multiprocessing()
        if self.flusher is not None and self._closed is None:
            multiprocessing.util.Finalize(None, weak_hook(self.close_at_exit), exitpriority=100)

    def statistics(self) -> Dict[str, Any]:
        result: Dict[str, Any] = {"delivery": self.ledger.as_dict()}
        registration = self.registration
        result["delivery"]["registration"] = (registration.as_dict() if registration is not None
                                              else not_registering(self.registrar is not None))
        if self.delivery is not None:
            result["sending_stopped_by_status"] = self.delivery.unauthorized
        if self.spool is not None:
            result["spool"] = {"files": len(self.spool), "bytes": self.spool.size_bytes()}
        return result


def _check_timeout(timeout: object) -> None:
    """Refuse a timeout a lock cannot wait (one below zero means 'now')."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number of seconds, got {timeout!r}")
    if not timeout <= threading.TIMEOUT_MAX:  # NaN and infinity fail this too
        raise ValueError(f"timeout must be a finite number of seconds, at most "
                         f"{threading.TIMEOUT_MAX:.0f}, got {timeout!r}")


def _import_what_delivery_needs(url: str) -> None:
    """Make here the imports a first request would make lazily on the agent's thread: a fork
    while a thread imports leaves the child an import lock nobody releases."""
    import encodings.idna  # noqa: F401
    import netrc  # noqa: F401
    import shlex  # noqa: F401

    import requests

    with requests.Session() as session:
        request = session.prepare_request(requests.Request("POST", url, data=b"{}"))
        session.merge_environment_settings(request.url, {}, None, None, None)


_held: List[logging.Handler] = []  # held by the forking thread: none is caught mid-write


def handlers_of(logger: logging.Logger) -> List[logging.Handler]:
    """Every handler a record logged on ``logger`` reaches (ancestors while propagating)."""
    found: List[logging.Handler] = []
    current: Optional[logging.Logger] = logger
    while current is not None:
        found.extend(h for h in current.handlers if h not in found)
        if not current.propagate:
            break
        current = current.parent
    return found


def hold_handlers() -> None:
    held = []
    for handler in handlers_of(logging.getLogger("impactagent")):
        if handler.lock is not None:
            handler.acquire()
            held.append(handler)
    _held[:] = held


def release_handlers() -> None:
    for handler in reversed(_held):
        with contextlib.suppress(RuntimeError):  # the child's logging may have renewed it
            handler.release()
    _held.clear()


os.register_at_fork(before=hold_handlers, after_in_parent=release_handlers,
                    after_in_child=release_handlers)


_started: weakref.WeakSet[Lifecycle] = weakref.WeakSet()
_guard = threading.Lock()
_sigterm = threading.Event()  # set by the handler: the closing thread begins
_ending = threading.Event()  # the first SIGTERM's closing has begun: a second one waits
_ended = threading.Event()  # it has settled everything: the next SIGTERM ends the process
#: This process's closing thread, started with the handler and waiting for SIGTERM (a
#: thread started by the handler would fail at exit, where Python 3.12 starts none).
_closer: Optional[Tuple[int, threading.Thread]] = None
SIGTERM_THREAD = "impactagent-sigterm"
_ABANDON_SECONDS = 1.0  # for an agent's stuck state to be spooled or counted
_END_SECONDS = 1.0  # for the main thread to run the handler that ends the process
_WAIT_SECONDS = 0.05
_OVERRUN_SECONDS = 1.0  # past its deadline, for the agent's work to end before its caller


def _on_an_agent_thread(work: Callable[[], FlushResult], deadline: float, name: str, *,
                        stop: Callable[[], None]) -> FlushResult:
    """``work()`` (that ends by ``deadline``) run on an agent thread while the caller waits.
    A signal handler runs on the main thread, so Ctrl-C or an app's ``sys.exit`` there ends
    the wait, never the work half-way: it is told to ``stop`` (retry nothing more) and keeps
    what it holds, and the close at exit waits for it. A caller that holds a lock the work
    needs (a log handler that flushes) stops waiting a moment past the deadline. At exit
    (no thread starts) the work runs here."""
    done: List[Tuple[Optional[FlushResult], Optional[BaseException]]] = []

    def run() -> None:
        try:
            done.append((work(), None))
        except BaseException as error:  # handed to the caller
            done.append((None, error))

    thread = start_or_run(run, name)
    try:
        while (thread is not None and thread.is_alive()
               and time.monotonic() < deadline + _OVERRUN_SECONDS):
            thread.join(_WAIT_SECONDS)  # short waits: the main thread's handlers run between
    except BaseException:
        stop()
        raise
    if not done:
        return FlushResult(timed_out=True, skipped="still running on its thread past the "
                                                   "deadline; it keeps what it holds")
    result, error = done[0]
    if error is not None:
        raise error
    assert result is not None
    return result


def _enroll(lifecycle: Lifecycle) -> None:
    """Close ``lifecycle`` on SIGTERM, unless IMPACTAGENT_HANDLE_SIGTERM turns it off;
    install the handler if this is the main thread and SIGTERM has its default action."""
    global _closer
    if os.environ.get("IMPACTAGENT_HANDLE_SIGTERM", "").strip().lower() in ("0", "false",
                                                                            "no", "off"):
        return
    with _guard:
        _started.add(lifecycle)
        handler = signal.getsignal(signal.SIGTERM)
        if (handler is signal.SIG_DFL and threading.current_thread() is threading.main_thread()
                and multiprocessing.parent_process() is None):
            signal.signal(signal.SIGTERM, _on_sigterm)  # an app's handler or SIG_IGN is theirs
            handler = _on_sigterm
        if (handler is _on_sigterm and multiprocessing.parent_process() is None
                and (_closer is None or _closer[0] != os.getpid())):  # a fork's own
            _closer = (os.getpid(), start_thread(_close_all_on_sigterm, SIGTERM_THREAD))


def _leave_to_multiprocessing() -> None:
    """In a ``multiprocessing`` child: give SIGTERM back its default action. A Pool worker
    waits in a semaphore a signal does not always interrupt, so a Python handler may never
    run and ``Pool.terminate()`` would wait for good."""
    if (threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGTERM) is _on_sigterm):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _on_sigterm(signum: int, frame: Optional[Any]) -> None:
    """Wake the closing thread, and return: the code this interrupts may hold a lock the
    closing needs (a flag's first count, ``statistics()``), so it must go on to release it."""
    if _ended.is_set() or _closer is None or _closer[0] != os.getpid():
        _end_as_sigterm()  # closed; or a child forked without hooks: its agents are not its
    if _ending.is_set():
        return
    _ending.set()
    for target in list(_started):
        target.hurry()
    _sigterm.set()


def _close_all_on_sigterm() -> None:
    _sigterm.wait()
    _close_all_and_end()


def _close_all_and_end() -> None:
    """Close every started agent, each within its ``shutdown_timeout``, then end; what an
    agent still holds by then is spooled or counted at once."""
    targets: List[Lifecycle] = list(_started)
    closers = [start_or_run(partial(t.close_now, t.settings.shutdown_timeout), SIGTERM_THREAD)
               for t in targets]
    deadline = time.monotonic() + max((t.settings.shutdown_timeout for t in targets),
                                      default=0.0) + 1.0
    for closer in closers:
        if closer is not None:
            closer.join(max(deadline - time.monotonic(), 0.0))
    # Every agent: a close running on another thread may outlast its closer.
    late = [start_or_run(target.abandon, SIGTERM_THREAD) for target in targets]
    for abandoning in late:
        if abandoning is not None:
            abandoning.join(_ABANDON_SECONDS)
    _ended.set()
    # Only the main thread may restore SIGTERM's default action: it does in the handler.
    with contextlib.suppress(ProcessLookupError, ValueError):
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGTERM)
        time.sleep(_END_SECONDS)
    os._exit(128 + signal.SIGTERM)  # the main thread runs no Python (stuck, or gone)


def _end_after_the_closing() -> None:
    """At exit, from a hook registered when this module is imported, so after every agent's
    own: an app whose main thread ended after a SIGTERM ends when the closing is done, as
    SIGTERM would (the hooks registered before it, logging's among them, do not run, as
    under SIGTERM's default action)."""
    if not _ending.is_set() or _closer is None or _closer[0] != os.getpid():
        return  # no SIGTERM came to this process (a child forked without hooks: its parent's)
    while _closer[1].is_alive() and not _ended.is_set():  # bounded by the closing's deadlines
        _closer[1].join(_WAIT_SECONDS)
    _end_as_sigterm()


atexit.register(_end_after_the_closing)


def _end_as_sigterm() -> None:
    """End the process as SIGTERM's default action would (call on the main thread)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)
    os._exit(128 + signal.SIGTERM)  # not reached: the default action ends the process


def _reset_after_fork() -> None:
    """A forked child starts with no SIGTERM closing in progress and a free guard."""
    global _guard, _ending, _ended, _sigterm, _closer
    _guard = threading.Lock()
    _ending = threading.Event()
    _ended = threading.Event()
    _sigterm = threading.Event()
    _closer = None  # the child's own starts with its agent


os.register_at_fork(after_in_child=_reset_after_fork)
