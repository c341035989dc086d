"""One flush: send what was recorded, and account for every count whatever the answer.

A flush runs on the flusher thread (or on the caller's, for ``flush()`` and ``close()``):

1. replay bodies left in the spool, oldest first;
2. collect a snapshot and build its bodies (none over the size limit); if building fails
   for any reason, the snapshot is merged back and nothing is lost. A window with nothing
   in it (no flag with a yes or no count, no impact-metric sample) is not sent: liveness is
   what registration is for, and the Node SDK sends nothing either. The flush still counts
   (``FlushResult.empty_window``, ``statistics()["delivery"]["empty_windows"]``). Its time
   span is not carried over: the next body's bucket starts where the empty window ended,
   which is exactly when what it carries began to be recorded (unleash-server files flag
   counts under ``bucket.stop``, Edge under ``bucket.start``; both stay true);
3. send each body, retrying network trouble, 429 and 5xx with full jitter and honouring
   ``Retry-After``, never past the flush's deadline;
4. settle each body: delivered; kept for later (spooled, or merged back into the recorder);
   split and resent (413); or dropped and counted (400, or too large even alone).

Who owns a body. The bodies a flush collected belong to that flush until it settles them.
``close()`` must return by its deadline even when a flush is stuck in a POST (a request
timeout can be longer than the shutdown timeout), so at its deadline it *takes over* the
bodies the running flush has not settled: each is spooled, or counted as
``not_delivered_by_close``, at once, so nothing depends on a thread that interpreter exit is
about to kill. If the POST comes back delivered after all, the take-over is undone (the
spool file removed, or the drop withdrawn): nothing is counted twice. After close, nothing
is merged back into the recorder: what is not delivered is spooled or counted.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, List, NamedTuple, Optional, Set, Tuple

import tenacity

from ..core.payload import (
    Payload,
    build_payloads,
    payload_from_document,
    split_payload,
)
from ..core.recorder import Recorder
from ..core.statistics import DeliveryLedger, DropCounter
from .transport_api import (
    DELIVERED,
    REJECTED,
    RETRY,
    TOO_LARGE,
    UNAUTHORIZED,
    Outcome,
    Transport,
    checked_post,
    told,
)

if TYPE_CHECKING:
    from ..core.payload import Identity
    from ..core.snapshot import Snapshot
    from .spool import Spool, SpoolEntry

logger = logging.getLogger("impactagent")

#: Full-jitter retry waits inside one flush: uniform(0, min(cap, base * 2**attempt)).
RETRY_BASE_SECONDS = 0.5
RETRY_CAP_SECONDS = 30.0

#: What turns a snapshot into bodies; a parameter so that a test can inject a failing one.
BuildPayloads = Callable[..., List[Payload]]


class FlushResult(NamedTuple):
    """What one flush did, in bodies and in recorded events."""

    delivered_bodies: int = 0
    kept_bodies: int = 0  # not delivered: spooled or merged back for the next flush
    dropped_bodies: int = 0  # refused by the server for good (400, too large): counted
    delivered_events: int = 0
    retries: int = 0
    timed_out: bool = False  # the deadline ran out before everything was tried
    skipped: str = ""  # why nothing was sent, if nothing was
    #: The window collected held nothing to send, so no body was built for it (not an
    #: error: ``ok`` stays True; bodies from the spool may still have been sent).
    empty_window: bool = False

    @property
    def ok(self) -> bool:
        """True when everything collected was delivered (an empty window included)."""
        return not (self.kept_bodies or self.dropped_bodies or self.timed_out or self.skipped)

    @property
    def server_unavailable(self) -> bool:
        """True when bodies were kept because the server could not take them now."""
        return self.kept_bodies > 0


class _Run:
    """One flush in progress: its counts, its interrupt, and the take-over generation it
    started in (a flush whose generation is old was orphaned by ``close()``)."""

    def __init__(self, deadline: float, interrupt: threading.Event, generation: int) -> None:
        self.deadline = deadline
        self.stopping = interrupt
        self.generation = generation
        self.delivered = self.kept = self.dropped = self.events = self.retries = 0
        self.timed_out = False
        self.retry_after = 0.0
        self.empty_window = False

    def pause(self, seconds: float) -> None:
        """Sleep between retries, waking at once when close() sets ``stopping``."""
        self.stopping.wait(seconds)

    def result(self, skipped: str = "") -> FlushResult:
        return FlushResult(self.delivered, self.kept, self.dropped, self.events, self.retries,
                           self.timed_out, skipped, self.empty_window)


class _Handover(NamedTuple):
    """A body close() took over while its POST was in flight: where it went, to undo if
    the POST comes back delivered."""

    payload: Payload  # held, so that its id() is not reused while this record lives
    events: int
    entry: Optional[SpoolEntry]  # the spool file it was written to, if any
    dropped_as: str  # the drop reason it was counted under, "" if it was spooled


class RefusalNotice:
    """Who explains a refused token: the first of the agent's senders (the metrics POSTs or
    the registration) that the server refused explains it in the log at length; the other
    then says briefly that it was refused too. One per agent, shared by both."""

    def __init__(self) -> None:
        self._told = False
        self._lock = threading.Lock()

    def first_to_tell(self) -> bool:
        """True once: for the first caller."""
        with self._lock:
            first, self._told = not self._told, True
            return first

    def reset_after_fork(self) -> None:
        """Another thread may have held the lock at the fork."""
        self._lock = threading.Lock()


class Delivery:
    """Sends snapshots of a :class:`Recorder` through a :class:`Transport` (any object
    with its protocol: see :mod:`impactagent.delivery.transport_api`), as ``identity``."""

    def __init__(
        self,
        recorder: Recorder,
        transport: Transport,
        *,
        identity: Identity,
        request_timeout: float,
        max_payload_bytes: int,
        ledger: DeliveryLedger,
        drops: DropCounter,
        spool: Optional[Spool] = None,
        build: BuildPayloads = build_payloads,
        refusals: Optional[RefusalNotice] = None,
        redact: Optional[Callable[[str], str]] = None,
    ) -> None:
        self.recorder = recorder
        #: What a transport says passes through this before it is logged (see checked_post).
        self.redact = redact
        self.transport = transport
        #: Who the bodies say they come from (a forked child gets its own).
        self.identity = identity
        self.refusals = refusals if refusals is not None else RefusalNotice()
        self._transport_faults: Set[str] = set()  # what a faulty transport did, said once
        self.request_timeout = request_timeout
        self.max_payload_bytes = max_payload_bytes
        self.ledger = ledger
        self.drops = drops
        self.spool = spool
        self._build = build
        #: Set after a 401/403: sending stops (recording goes on) until reconfigured.
        self.unauthorized: Optional[int] = None
        self.last_retry_after = 0.0
        #: True once close() began: bodies not delivered are spooled or counted, never
        #: merged back into the recorder.
        self.closing = False
        self.closed = False
        self._lock = threading.Lock()  # one flush at a time (until close takes over)
        # Guards who owns which body: the running flushes, or close's take-over.
        self._ownership = threading.Lock()
        self._generation = 0
        self._owned: Dict[int, Payload] = {}  # id -> bodies a running flush has not settled
        self._in_flight: Dict[int, Payload] = {}  # id -> owned bodies inside their POST
        self._handed: Dict[int, _Handover] = {}  # id -> bodies close took over in flight

    # -- flushing ----------------------------------------------------------------------------

    def flush(self, deadline: float, interrupt: Optional[threading.Event] = None
              ) -> FlushResult:
        """Run one flush that ends by ``deadline`` (a ``time.monotonic()`` value).

        Setting ``interrupt`` cuts retry waits short and stops further retries; each body
        still gets its attempt, so a flush interrupted by shutdown still tries everything.
        """
        if self.closed:
            return FlushResult(skipped="the agent is closed")
        if not self._lock.acquire(timeout=max(deadline - time.monotonic(), 0)):
            return FlushResult(timed_out=True, skipped="another flush is still running")
        try:
            if self.closing:  # close() began while this flush waited for its turn
                return FlushResult(skipped="the agent is closed")
            return self._flush(self._new_run(deadline, interrupt))
        finally:
            self._lock.release()

    def _new_run(self, deadline: float, interrupt: Optional[threading.Event]) -> _Run:
        with self._ownership:
            generation = self._generation
        return _Run(deadline, interrupt if interrupt is not None else threading.Event(),
                    generation)

    def _orphaned(self, run: _Run) -> bool:
        return run.generation != self._generation

    def _flush(self, run: _Run) -> FlushResult:
        if self.unauthorized is not None:
            return run.result(skipped=f"stopped after HTTP {self.unauthorized}")
        # If the server is not taking the spool's backlog, keep the new window as well.
        backlog_sent = self.spool is None or self._replay_spool(run)
        if self._orphaned(run):
            return run.result(skipped="taken over by close()")
        try:
            payloads = self._collect()
        except _BuildFailed as failure:
            return run.result(skipped=str(failure))
        payloads = self._worth_sending(payloads, run)
        self._own(payloads)
        # Each body is let go once settled, not all at the end: freeing a 100k-series
        # window's bodies at once is one C-level stretch (20 ms measured, see
        # benchmarks/collect.py) during which no recording thread gets the GIL.
        payloads.reverse()
        while payloads:
            payload = payloads.pop()
            try:
                if not backlog_sent or run.kept or self.unauthorized is not None:
                    self._keep(payload, run)  # it failed a moment ago: do not hammer it
                else:
                    self._send_and_settle(payload, run)
            except BaseException:
                # A bug, Ctrl-C or a handler's SystemExit must not lose what was collected:
                # keep every body not yet settled, the halves of a split one included
                # (merged back, spooled or, when closing, counted; at worst one is sent
                # twice), then let it go on.
                with self._ownership:
                    unsettled = list(self._owned.values())
                    self._in_flight.clear()
                for rest in unsettled:
                    self._keep(rest, run)
                raise
        self.last_retry_after = run.retry_after  # the flusher never undercuts it
        return run.result()

    def _collect(self) -> List[Payload]:
        """Collect and build the bodies; if building fails, the snapshot goes back whole."""
        snapshot = self.recorder.collect()
        try:
            return self._build_from(snapshot)
        except Exception as error:
            self.recorder.restore(snapshot)
            self.ledger.add("flush_errors")
            logger.exception("impactagent: building request bodies failed; what was "
                             "collected is kept for the next flush")
            raise _BuildFailed(f"building bodies failed ({type(error).__name__}); "
                               "kept for the next flush") from error

    def _worth_sending(self, payloads: List[Payload], run: _Run) -> List[Payload]:
        """The bodies that carry something; an empty window is counted, not sent."""
        carrying = [payload for payload in payloads if payload.units]
        if not carrying:
            run.empty_window = True
            self.ledger.add("empty_windows")
        return carrying

    def _build_from(self, snapshot: Snapshot) -> List[Payload]:
        return self._build(snapshot, self.identity, max_bytes=self.max_payload_bytes,
                           drops=self.drops)

    # -- sending one body, with retries inside the deadline ----------------------------------

    def _send_and_settle(self, payload: Payload, run: _Run, *, owned: bool = True) -> None:
        if owned:
            with self._ownership:
                if id(payload) not in self._owned:
                    return  # close took it over before it was sent
                self._in_flight[id(payload)] = payload
        outcome = self._send(payload, run)
        for half in self._settle(payload, outcome, run, owned=owned):
            self._send_and_settle(half, run, owned=owned)

    def _send(self, payload: Payload, run: _Run) -> Outcome:
        events = payload.events
        deadline = run.deadline

        def attempt() -> Outcome:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return Outcome(RETRY, detail="flush deadline reached")
            outcome = checked_post(self.transport, payload.body,
                                   min(self.request_timeout, remaining), self._transport_faults,
                                   self.redact)
            self.ledger.attempt(outcome)
            if outcome.maybe_delivered:
                # The server may have stored it; resending may count it twice. Say so.
                self.ledger.add("possibly_duplicated_events", events)
            return outcome

        def wait(state: tenacity.RetryCallState) -> float:
            outcome: Outcome = state.outcome.result()  # type: ignore[union-attr]
            if outcome.retry_after is not None:
                run.retry_after = max(run.retry_after, outcome.retry_after)
                return outcome.retry_after
            # The exponent is capped: a server answering "Retry-After: 0" at once can run up
            # thousands of attempts in one flush, and 2.0 ** 1024 overflows a float.
            ceiling = min(RETRY_CAP_SECONDS,
                          RETRY_BASE_SECONDS * 2.0 ** min(state.attempt_number, 32))
            return random.uniform(0, ceiling)

        def give_up(state: tenacity.RetryCallState) -> bool:
            upcoming = state.upcoming_sleep or 0.0
            return (run.stopping.is_set() or self._orphaned(run)  # close took over: stop
                    or time.monotonic() + upcoming >= deadline)

        def before_sleep(state: tenacity.RetryCallState) -> None:
            run.retries += 1
            self.ledger.add("retries")

        retrying = tenacity.Retrying(
            # A redirect will not go away within one flush: keep the body for the next.
            retry=tenacity.retry_if_result(
                lambda outcome: outcome.kind == RETRY and not _is_redirect(outcome)),
            wait=wait,
            stop=give_up,
            sleep=run.pause,  # close() cuts a retry wait short
            before_sleep=before_sleep,
            retry_error_callback=lambda state: state.outcome.result(),  # type: ignore
        )
        outcome: Outcome = retrying(attempt)
        if outcome.kind == RETRY and time.monotonic() >= deadline:
            run.timed_out = True
        return outcome

    # -- what happens to a body after its last attempt ---------------------------------------

    def _settle(self, payload: Payload, outcome: Outcome, run: _Run, *, owned: bool
                ) -> List[Payload]:
        """Account for ``payload`` after ``outcome``; return the halves to send (413)."""
        events = payload.events
        if owned:
            with self._ownership:
                self._in_flight.pop(id(payload), None)
                handed = self._handed.pop(id(payload), None)
                if handed is not None:  # close() took it over while it was in flight
                    # The answer came: it is no longer "possibly delivered" (a timeout was
                    # counted as such by its attempt already).
                    self.ledger.add("possibly_duplicated_events", -handed.events)
                    if outcome.kind == DELIVERED:
                        self._undo_handover(handed)
                        self._delivered(events, run)
                    return []
                if self._owned.pop(id(payload), None) is None:
                    return []  # not ours any more (cannot happen: a take-over is recorded)
                if outcome.kind == TOO_LARGE:
                    halves = split_payload(payload)
                    if len(halves) > 1:
                        self._owned.update((id(half), half) for half in halves)
                        return halves
        if outcome.kind == DELIVERED:
            self._delivered(events, run)
        elif outcome.kind == REJECTED:
            run.dropped += 1
            logger.error(
                "impactagent: %s answered HTTP 400 to a metrics body of %d bytes; dropping its "
                "%d events (counted as 'rejected_by_server'). The server said: %s",
                self.transport.metrics_url, len(payload.body), events,
                outcome.detail or "(nothing)",
            )
            self.drops.add("rejected_by_server", events, detail=self.transport.metrics_url,
                           explained=True)
        elif outcome.kind == TOO_LARGE:
            halves = split_payload(payload)
            if len(halves) > 1:
                return halves  # a spooled body (not owned): its halves are resent as they are
            run.dropped += 1
            self.drops.add("too_large", events, detail=self.transport.metrics_url)
        elif outcome.kind == UNAUTHORIZED:
            self._stop_sending(outcome)
            self._keep(payload, run, owned=owned, settled=True)
        else:
            self._keep(payload, run, owned=owned, settled=True)
        return []

    def _delivered(self, events: int, run: _Run) -> None:
        run.delivered += 1
        run.events += events
        self.ledger.delivered(events)

    def _keep(self, payload: Payload, run: _Run, *, owned: bool = True,
              settled: bool = False) -> None:
        """Hold on to a body that was not delivered: on disk if spooling, else merged back
        into the recorder; once closing, on disk or counted as dropped."""
        run.kept += 1
        if owned and not settled:
            with self._ownership:
                if self._owned.pop(id(payload), None) is None:
                    return  # close took it over: already spooled or counted
        if self.spool is not None:
            if self.spool.write(payload.body) is None:  # not stored: the spool counted it
                run.kept -= 1
                run.dropped += 1
            return
        part = payload.part()
        if part is None:
            return
        with self._ownership:
            if not self.closing:
                self.recorder.restore(part)
                return
        self._count_not_delivered(payload.events)

    def _own(self, payloads: List[Payload]) -> None:
        with self._ownership:
            self._owned.update((id(payload), payload) for payload in payloads)

    # -- closing -----------------------------------------------------------------------------

    def close(self, deadline: float) -> FlushResult:
        """The last flush, by ``deadline``; then what is left is spooled or counted.

        A flush still running at half the remaining time is taken over (see the module
        docstring), and the last window is sent alongside it.
        """
        remaining = max(deadline - time.monotonic(), 0)
        got_lock = self._lock.acquire(timeout=remaining / 2)
        try:
            taken = self._take_over()
            try:
                result = self._flush(self._new_run(deadline, None))
            except Exception:  # a bug: what it held was kept (spooled or counted) above
                logger.exception("impactagent: the last flush failed unexpectedly")
                result = FlushResult(skipped="the last flush failed (see the log)")
            if taken:  # bodies still in flight at the deadline: not known delivered
                result = result._replace(kept_bodies=result.kept_bodies + taken,
                                         timed_out=True)
            return result
        finally:
            # Even when Ctrl-C or a SystemExit cuts the last flush short: what is left in
            # the recorder is spooled or counted before close() gives up.
            try:
                self.set_aside()
            finally:
                self.closed = True
                if got_lock:
                    self._lock.release()
                try:
                    self.transport.close()
                except Exception as error:  # a user's transport: close() still returns
                    logger.error("impactagent: the transport's close() failed (%s)",
                                 told(error, self.redact))

    def _take_over(self) -> int:
        """Orphan any running flush: its unsettled bodies are spooled or counted now.

        A body whose POST is in flight may reach the server yet: it is also counted as
        possibly duplicated until its answer comes (at exit it never does, and a spooled
        copy is sent again by the next agent), and a record of it lets that answer undo
        the take-over. Bodies still queued are never sent by the orphan: no record.
        Returns how many bodies were taken over.
        """
        with self._ownership:
            self.closing = True
            self._generation += 1
            for key, payload in self._owned.items():
                handed = self._hand_over(payload)
                if key in self._in_flight:
                    self.ledger.add("possibly_duplicated_events", handed.events)
                    self._handed[key] = handed
            taken = len(self._owned)
            self._owned.clear()
            return taken

    def _hand_over(self, payload: Payload) -> _Handover:
        events = payload.events
        if self.spool is not None:
            return _Handover(payload, events, self.spool.write(payload.body), "")
        self._count_not_delivered(events)
        return _Handover(payload, events, None, "not_delivered_by_close")

    def _handed_files(self) -> Set[Path]:
        with self._ownership:
            return {h.entry.path for h in self._handed.values() if h.entry is not None}

    def _undo_handover(self, handed: _Handover) -> None:
        """A body taken over at close was delivered after all: un-spool or un-count it."""
        if handed.dropped_as:
            self.drops.withdraw(handed.dropped_as, handed.events)
        elif handed.entry is not None and self.spool is not None:
            claimed = self.spool.claim(handed.entry)
            if claimed is not None:
                self.spool.remove(claimed)
            else:  # another process is already sending the file: it will arrive twice
                self.ledger.add("possibly_duplicated_events", handed.events)

    def set_aside(self) -> int:
        """At close: put what could not be delivered where it is not lost silently.

        With a spool, the rest goes to disk and the next agent on the same ``spool_dir``
        sends it (after a restart with a valid token, say). Without one, it is counted as
        dropped (``not_delivered_by_close``) and logged. Returns the events set aside.
        """
        pending = self.recorder.pending_events()
        try:
            payloads = self._build_from(self.recorder.collect())
        except Exception:
            logger.exception("impactagent: building the last request bodies at close failed")
            self._count_not_delivered(pending)
            return pending
        events = 0
        for payload in payloads:
            carried = payload.events
            if carried == 0:
                continue  # an empty window: nothing was recorded in it, nothing to keep
            events += carried
            if self.spool is not None:
                self.spool.write(payload.body)
            else:
                self._count_not_delivered(carried)
        return events

    def _count_not_delivered(self, events: int) -> None:
        if not events:
            return
        why = (f"sending was stopped by HTTP {self.unauthorized}" if self.unauthorized
               else "the server did not take them before the close deadline")
        logger.error("impactagent: closing with %d events not delivered to %s (%s) and no "
                     "spool_dir to keep them; they are counted as 'not_delivered_by_close'.",
                     events, self.transport.metrics_url, why)
        self.drops.add("not_delivered_by_close", events, detail=self.transport.metrics_url,
                       explained=True)

    def _stop_sending(self, outcome: Outcome) -> None:
        if self.unauthorized is None and not self.refusals.first_to_tell():
            logger.warning("impactagent: %s answered HTTP %s too: sending stops (recording "
                           "goes on) until the agent is restarted with a valid token.",
                           self.transport.metrics_url, outcome.status)
        elif self.unauthorized is None:
            logger.error(
                "impactagent: %s answered HTTP %s: the API token is missing, unknown or not a "
                "client/backend token. Sending stops (recording goes on) until the agent is "
                "restarted with a valid token.",
                self.transport.metrics_url, outcome.status,
            )
        self.unauthorized = outcome.status

    # -- the spool's backlog -----------------------------------------------------------------

    def _replay_spool(self, run: _Run) -> bool:
        """Send spooled bodies oldest first; False if the server did not take one."""
        assert self.spool is not None
        handed = self._handed_files()
        for entry in self.spool.entries():
            if entry.path in handed:
                continue  # its POST is still in flight: resending it now would double it
            if (time.monotonic() >= run.deadline or run.stopping.is_set()
                    or self._orphaned(run)):
                run.timed_out = time.monotonic() >= run.deadline
                return False
            claimed = self.spool.claim(entry)
            if claimed is None:
                continue  # another process (a forked sibling) is sending it
            body = self.spool.read(claimed)
            if body is None:
                continue  # corrupt: moved aside and counted
            payload = payload_from_document(json.loads(body))
            try:
                outcome = self._send(payload, run)
            except BaseException:
                # Ctrl-C or a handler's SystemExit mid-send: the file goes back in the queue
                # (claimed, it would be nobody's until the process restarts), then it goes on.
                self.spool.release(claimed)
                raise
            if outcome.kind in (RETRY, UNAUTHORIZED):
                # Back in the queue at its old place: it stays the oldest and goes first.
                self.spool.release(claimed)
                if outcome.kind == UNAUTHORIZED:
                    self._stop_sending(outcome)
                run.kept += 1
                return False
            # Delivered, dropped (counted) or split (failed halves are spooled anew): only
            # now is the file done with. A kill -9 before this line resends, never loses.
            for half in self._settle(payload, outcome, run, owned=False):
                self._send_and_settle(half, run, owned=False)
            self.spool.remove(claimed)
        return True

    # -- fork --------------------------------------------------------------------------------

    def reset_after_fork(self, ledger: DeliveryLedger, identity: Identity) -> None:
        """In a forked child: new locks, no flush in progress, the child's own ledger and
        connection (what the parent's flush held in flight is the parent's to settle)."""
        self._lock = threading.Lock()
        self._ownership = threading.Lock()
        self._owned = {}
        self._in_flight = {}
        self._handed = {}
        self.ledger = ledger
        self.identity = identity
        self.refusals.reset_after_fork()
        try:
            self.transport.reset_after_fork(identity)
        except Exception as error:  # a user's transport: the child's reset must finish
            logger.error("impactagent: the transport's reset_after_fork() failed in a "
                         "forked child (%s); it is used as it is", told(error, self.redact))


def _is_redirect(outcome: Outcome) -> bool:
    return outcome.status is not None and 300 <= outcome.status < 400


class _BuildFailed(Exception):
    """Building bodies failed; the snapshot was restored. The message says so."""


__all__: Tuple[str, ...] = ("Delivery", "FlushResult")
