"""One flush: send what was recorded, and account for every count whatever the answer.

The spool's backlog first, then the new window; each body settled once (:mod:`.parcels`):
delivered, kept (spooled, merged back, or at close counted as ``not_delivered_by_close``),
split (413) or dropped and counted (400). A POST still running at the deadline stays in
flight, settled by its answer whenever it comes.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import TYPE_CHECKING, Callable, List, NamedTuple, Optional, Set, Tuple, Union

import tenacity

from ..core.payload import Payload, build_payloads, payload_from_document, split_payload
from ..core.recorder import Recorder
from ..core.snapshot import Snapshot
from ..core.statistics import DeliveryLedger, DropCounter, Drops, DropTally
from .backoff import Backoff
from .deadline import NO_ANSWER, NOT_STARTED, CallThread, start_or_run
from .health import Health
from .parcels import OPEN, SENDING, TAKEN, Parcel, Parcels
from .transport_api import (
    DELIVERED,
    REJECTED,
    RETRY,
    TOO_LARGE,
    UNAUTHORIZED,
    Outcome,
    Redact,
    Transport,
    checked,
    is_redirect,
    told,
)

if TYPE_CHECKING:
    from ..core.payload import Identity
    from .spool import Spool, SpoolEntry

logger = logging.getLogger(__name__)

RETRIES = Backoff(first=0.5, most=30.0)  # in a flush the app asked for: full jitter
POSSIBLY_DUPLICATED = "possibly_duplicated_events"
NOT_DELIVERED_BY_CLOSE = "not_delivered_by_close"
ANSWER_GRACE_SECONDS = 0.1  # past a POST's timeout, for the transport's own answer
_TURN_RECHECK_SECONDS = 0.05  # a flush waiting for its turn looks whether the process ends
_SETTLE_SECONDS = 0.5  # at most, for a body being kept to reach the spool before the end

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
    empty_window: bool = False  # nothing was recorded: not an error

    @property
    def ok(self) -> bool:
        """True when everything collected was delivered (an empty window included)."""
        return not (self.kept_bodies or self.dropped_bodies or self.timed_out or self.skipped)

    @property
    def server_unavailable(self) -> bool:
        """True when bodies were kept because the server could not take them now."""
        return self.kept_bodies > 0


class _Run:
    """One flush in progress: its deadline (close may bring it forward), pace and counts."""

    def __init__(self, deadline: float, interrupt: threading.Event, paced: bool) -> None:
        self.deadline = deadline
        self.stopping = interrupt
        self.paced = paced
        self.delivered = self.kept = self.dropped = self.events = self.retries = 0
        self.timed_out = False
        self.empty_window = False
        self.failure = ""  # what the last failed attempt said
        self.is_late = False

    @classmethod
    def late(cls) -> _Run:
        """The run a late answer is settled in: nothing reads its counts or sends from it."""
        run = cls(0.0, threading.Event(), paced=True)
        run.is_late = True
        return run

    def hurry(self, until: float) -> None:
        """End by ``until`` at the latest, retrying nothing more."""
        self.deadline = min(self.deadline, until)
        self.stopping.set()

    def tries_no_more(self, attempts: int, wait: float) -> bool:
        return (self.stopping.is_set() or time.monotonic() + wait >= self.deadline
                or (self.paced and attempts >= 1))

    def pause(self, seconds: float) -> None:
        self.stopping.wait(seconds)

    def result(self, skipped: str = "") -> FlushResult:
        return FlushResult(self.delivered, self.kept, self.dropped, self.events, self.retries,
                           self.timed_out, skipped, self.empty_window)


class Delivery:
    """Sends snapshots of a :class:`Recorder` through a :class:`Transport`, as ``identity``."""

    def __init__(self, recorder: Recorder, transport: Transport, *, identity: Identity,
                 request_timeout: float, max_payload_bytes: int, ledger: DeliveryLedger,
                 drops: DropCounter, spool: Optional[Spool] = None,
                 build: BuildPayloads = build_payloads, redact: Optional[Redact] = None
                 ) -> None:
        self.recorder = recorder
        self.redact = redact  # what a transport says, before it is logged
        self.transport = transport
        self.identity = identity
        #: Held once a refused token was explained: the registration then says less.
        self.refusals = threading.Lock()
        self._transport_faults: Set[str] = set()  # what a faulty transport did, said once
        self.request_timeout = request_timeout
        self.max_payload_bytes = max_payload_bytes
        self.ledger = ledger
        self.drops = drops
        self.spool = spool
        self._build = build
        self.calls = CallThread("impactagent-sender")  # every POST, so that deadlines hold
        self.health = Health(transport.metrics_url)
        self.unauthorized: Optional[int] = None  # 401/403: sending stops until reconfigured
        self.not_before = 0.0  # no paced flush sends before this: the server's Retry-After
        self.closing = False  # once set, nothing is merged back into the recorder
        self.closed = False
        #: Once SIGTERM came, the time by which close's last flush ends.
        self.ending: Optional[float] = None
        self._lock = threading.Lock()  # one flush at a time
        self._parcels = Parcels()
        self._running: Optional[_Run] = None

    def flush(self, deadline: float, interrupt: Optional[threading.Event] = None, *,
              paced: bool = False) -> FlushResult:
        """Run one flush that ends by ``deadline`` (``time.monotonic()``); ``interrupt`` stops
        further retries. An app's flush retries each body until the deadline; a ``paced`` one
        (the flusher's) tries each once and sends nothing before the server's Retry-After."""
        if self.closed:
            return FlushResult(skipped="the agent is closed")
        while not self._lock.acquire(timeout=min(max(deadline - time.monotonic(), 0),
                                                 _TURN_RECHECK_SECONDS)):
            if (self.ending is not None or time.monotonic() >= deadline  # SIGTERM ends it too
                    or (interrupt is not None and interrupt.is_set())):
                return FlushResult(timed_out=True, skipped="another flush is still running")
        try:
            if self.closing:  # close() began while this flush waited for its turn
                return FlushResult(skipped="the agent is closed")
            if self.ending is not None:
                return FlushResult(timed_out=True, skipped="the process is ending")
            run = _Run(deadline, interrupt or threading.Event(), paced)
            self._running = run
            try:
                return self._flush_and_tell(run)
            finally:
                if self._running is run:  # not close's last flush, begun while this one hung
                    self._running = None
        finally:
            self._lock.release()

    def _flush_and_tell(self, run: _Run) -> FlushResult:
        result = self._flush(run) if self.unauthorized is None else run.result(
            skipped=f"stopped after HTTP {self.unauthorized}")
        self.health.after(result, run.failure, self._keeping())
        return result

    def _flush(self, run: _Run) -> FlushResult:
        try:
            # A body left in flight is taken back once its call is stuck: until then this
            # flush's POSTs would queue behind it anyway.
            self._parcels.wait_answered(
                lambda: time.monotonic() if run.stopping.is_set() else run.deadline)
            self._take_all(close=False)
            paced_out = run.paced and time.monotonic() < self.not_before
            backlog_sent = not paced_out and (self.spool is None or self._replay_spool(run))
            for parcel in self._collect(run):  # kept, not sent, if the server just failed
                if not backlog_sent or run.kept or self.unauthorized is not None:
                    with self._parcels.settling(parcel) as before:
                        if before in (OPEN, SENDING):  # not taken by close
                            self._keep(parcel, run)
                else:
                    self._send(parcel, run)
        except _BuildFailed as failure:
            return run.result(skipped=str(failure))
        except BaseException:  # a bug, Ctrl-C or SystemExit: nothing collected is lost
            self._take_all(close=False)
            raise
        return run.result()

    def _collect(self, run: _Run) -> List[Parcel]:
        collected = self._parcels.collect(self.recorder.collect)
        if collected is None:
            return []  # closed meanwhile: close() sets the rest aside
        snapshot = collected.content
        assert isinstance(snapshot, Snapshot)
        drops = DropTally(self.drops)  # counted only if this build's bodies replace it
        try:
            payloads = self._build_from(snapshot, drops)
        except Exception as error:
            with self._parcels.settling(collected) as before:
                if before == OPEN:  # not taken (and given back) by close
                    self.recorder.restore(snapshot)
            self.ledger.add("flush_errors")
            logger.exception("building request bodies failed; what was collected is kept "
                             "for the next flush")
            raise _BuildFailed(f"building bodies failed ({type(error).__name__}); "
                               "kept for the next flush") from error
        carrying = [payload for payload in payloads if payload.units]
        parcels = self._parcels.replace(collected, carrying, drops)
        if parcels is None:
            return []  # taken by close, which builds it again
        if not carrying:
            run.empty_window = True
            self.ledger.add("empty_windows")
        return parcels

    def _build_from(self, snapshot: Snapshot, drops: Drops) -> List[Payload]:
        return self._build(snapshot, self.identity, max_bytes=self.max_payload_bytes,
                           drops=drops)

    def _send(self, parcel: Parcel, run: _Run) -> None:
        if not self._parcels.start_sending(parcel):
            return  # taken by close before it was sent
        outcome = self._post(parcel, run)
        for half in self._settle(parcel, outcome, run):
            self._send(half, run)

    def _post(self, parcel: Parcel, run: _Run) -> Outcome:
        """POST, retrying until the run ends; never past a redirect or a call in flight."""
        def count_retry(state: tenacity.RetryCallState) -> None:
            run.retries += 1
            self.ledger.add("retries")

        outcome: Outcome = tenacity.Retrying(
            retry=tenacity.retry_if_result(lambda outcome: (
                outcome.kind == RETRY and not is_redirect(outcome.status)
                and parcel.in_flight is None)),
            wait=lambda state: RETRIES.wait(state.attempt_number, _last(state).retry_after or 0.0),
            stop=lambda state: run.tries_no_more(state.attempt_number, state.upcoming_sleep),
            sleep=run.pause, before_sleep=count_retry, retry_error_callback=_last,
        )(self._attempt, parcel, run)
        if outcome.kind == RETRY and time.monotonic() >= run.deadline:
            run.timed_out = True
        return outcome

    def _attempt(self, parcel: Parcel, run: _Run) -> Outcome:
        if time.monotonic() >= run.deadline:
            return Outcome(RETRY, detail="flush deadline reached")
        if parcel.claim is not None and self.spool is not None:
            renewed = self.spool.renew(parcel.claim)
            if renewed is None:  # the lease ran out and another process took it
                return Outcome(RETRY, detail="spool claim lost")
            parcel.claim = renewed
        outcome = self._call(parcel, run)
        self.ledger.attempt(outcome)
        if outcome.maybe_delivered and parcel.in_flight is None:  # in flight: counted later
            self.ledger.add(POSSIBLY_DUPLICATED, parcel.events)
        if outcome.kind != DELIVERED:
            run.failure = outcome.detail or f"HTTP {outcome.status}"
        self._heed(outcome)
        return outcome

    def _heed(self, outcome: Optional[Outcome]) -> None:  # the server's Retry-After
        if outcome is not None and outcome.retry_after is not None:
            self.not_before = max(self.not_before, time.monotonic() + outcome.retry_after)

    def _call(self, parcel: Parcel, run: _Run) -> Outcome:
        body = parcel.payload.body
        own_deadline = time.monotonic() + self.request_timeout
        timeout = max(min(own_deadline, run.deadline) - time.monotonic(), 0.001)
        how, job = self.calls.call(  # a grace: the transport's own timeout says more
            lambda: checked(lambda: self.transport.post(body, timeout), self.transport,
                            self._transport_faults, self.redact),
            lambda: min(own_deadline, run.deadline) + ANSWER_GRACE_SECONDS)
        if how == NOT_STARTED:
            return Outcome(RETRY, detail="not sent: an earlier request has not ended")
        if how == NO_ANSWER or job.result is None:
            parcel.in_flight = job  # its answer may still come: see _settle
            return Outcome(RETRY, detail="no answer by the deadline", maybe_delivered=True)
        return job.result

    def _settle(self, parcel: Parcel, outcome: Outcome, run: _Run) -> List[Parcel]:
        """Account for ``parcel``, or leave it to a late answer; the halves to send (413)."""
        job = parcel.in_flight
        if job is not None:
            run.kept += 1
            job.when_done(lambda answer: self._answer_late(parcel, answer))
            return []
        return self._answered(parcel, outcome, run)

    def _answer_late(self, parcel: Parcel, outcome: Optional[Outcome]) -> None:
        self._heed(outcome)
        self._answered(parcel, outcome, _Run.late())

    def _answered(self, parcel: Parcel, outcome: Optional[Outcome], run: _Run) -> List[Parcel]:
        """Settle a body by its answer (None: the late call raised); the halves of a 413."""
        with self._parcels.settling(parcel) as before:
            return self._settle_by(parcel, before, outcome, run)

    def _settle_by(self, parcel: Parcel, before: str, outcome: Optional[Outcome], run: _Run
                   ) -> List[Parcel]:
        if before == TAKEN:  # close kept it while its POST was in flight
            self._answer_taken(parcel, outcome, late=run.is_late)
            return []
        if before != SENDING:
            return []  # taken before it was sent: the taker kept it
        if outcome is None:  # the late call raised
            outcome = Outcome(RETRY, detail="the request failed", maybe_delivered=True)
        if run.is_late and outcome.maybe_delivered:  # not counted by its attempt
            self.ledger.add(POSSIBLY_DUPLICATED, parcel.events)
        kind = outcome.kind
        if kind == TOO_LARGE and run.is_late:
            kind = RETRY  # kept: the next flush meets the 413 again, and splits it then
        elif kind == TOO_LARGE:
            halves = split_payload(parcel.payload)
            if len(halves) > 1:
                return self._split(parcel, halves, run)
        self._account(parcel, kind, outcome, run)
        return []

    def _account(self, parcel: Parcel, kind: str, outcome: Outcome, run: _Run) -> None:
        if kind in (DELIVERED, REJECTED, TOO_LARGE):
            self._done_with(parcel)
        if kind == DELIVERED:
            run.delivered += 1
            run.events += parcel.events
            self.ledger.delivered(parcel.events)
        elif kind == REJECTED:
            run.dropped += 1  # counted before it is logged: a signal may come meanwhile
            self.drops.add("rejected_by_server", parcel.events,
                           detail=self.transport.metrics_url, explained=True)
            logger.error(
                "%s answered HTTP 400 to a metrics body of %d bytes; dropping its %d events "
                "(counted as 'rejected_by_server'). The server said: %s",
                self.transport.metrics_url, len(parcel.payload.body), parcel.events,
                outcome.detail or "(nothing)")
        elif kind == TOO_LARGE:
            run.dropped += 1
            self.drops.add("too_large", parcel.events, detail=self.transport.metrics_url)
        else:
            refused_now = kind == UNAUTHORIZED and self.unauthorized is None
            if kind == UNAUTHORIZED:
                self.unauthorized = outcome.status
            self._keep(parcel, run)
            if refused_now:
                self._tell_refused(outcome)

    def _split(self, parcel: Parcel, halves: List[Payload], run: _Run) -> List[Parcel]:
        """A 413: the halves take the body's place (a spooled body's go to the spool)."""
        if parcel.claim is None:
            return [self._parcels.open(half) for half in halves]
        assert self.spool is not None
        for half in halves:
            self.spool.write(half.body)
        self._done_with(parcel)
        run.kept += 1
        return []

    def _done_with(self, parcel: Parcel) -> None:
        if (parcel.claim is not None and self.spool is not None
                and not self.spool.remove(parcel.claim)):  # our lease ran out mid-send
            self.ledger.add(POSSIBLY_DUPLICATED, parcel.events)

    def _keep(self, parcel: Parcel, run: _Run) -> None:
        kept_as = parcel.kept_as = self._keep_body(parcel, final=self.closing)
        if kept_as is None and parcel.claim is None and self.spool is not None:
            run.dropped += 1  # the spool could not store it: it counted the drop
        else:
            run.kept += 1

    def _keep_body(self, parcel: Parcel, *, final: bool) -> Union[SpoolEntry, str, None]:
        """Spool the body, or merge it back into the recorder (``final``: count it)."""
        if parcel.claim is not None and self.spool is not None:
            return self.spool.release(parcel.claim)
        payload = parcel.payload
        if self.spool is not None:
            return self.spool.write(payload.body)
        part = payload.part()
        if part is not None and not final:
            self.recorder.restore(part)
            return None
        self._count_not_delivered(parcel.events)
        return NOT_DELIVERED_BY_CLOSE

    def _answer_taken(self, parcel: Parcel, outcome: Optional[Outcome], *, late: bool) -> None:
        """The answer to a body taken in flight (its taking counted it possibly duplicated)."""
        sure = outcome is not None and not outcome.maybe_delivered
        if not late and not sure:
            self.ledger.add(POSSIBLY_DUPLICATED, -parcel.events)
        if sure and self._parcels.hear(parcel, outcome):
            self._late_answer(parcel, outcome)

    def _late_answer(self, parcel: Parcel, outcome: Optional[Outcome]) -> None:
        """The answer to a body already kept: a delivery undoes the keeping where it can."""
        delivered = outcome is not None and outcome.kind == DELIVERED
        if delivered:
            self.ledger.delivered(parcel.events)
        if not delivered or self._undo_keeping(parcel):
            self.ledger.add(POSSIBLY_DUPLICATED, -parcel.events)  # no risk left

    def _undo_keeping(self, parcel: Parcel) -> bool:
        kept_as = parcel.kept_as
        if isinstance(kept_as, str):
            self.drops.withdraw(kept_as, parcel.events)
            return True
        if kept_as is None or self.spool is None:
            return False
        claimed = self.spool.claim(kept_as)
        return claimed is not None and self.spool.remove(claimed)

    def close(self, deadline: float) -> FlushResult:
        """The last flush, by ``deadline``; then what is left is spooled or counted."""
        self.closing = True
        halfway = time.monotonic() + max(deadline - time.monotonic(), 0) / 2
        running = self._running
        if running is not None:
            running.hurry(halfway)
        got_lock = self._lock.acquire(timeout=max(halfway - time.monotonic(), 0))
        try:
            self._parcels.wait_answered(  # an answer heard by halfway settles its body
                lambda: halfway if self.ending is None else min(halfway, self.ending))
            taken = self._take_all(close=False)
            last = self._running = _Run(deadline, threading.Event(), paced=False)
            if self.ending is not None:  # SIGTERM came while close waited
                last.hurry(self.ending)
            try:
                result = self._flush_and_tell(last)
            except Exception:  # a bug: what it held was kept above
                logger.exception("the last flush failed unexpectedly")
                result = FlushResult(skipped="the last flush failed (see the log)")
            cut = running.result() if running is not None else FlushResult()
            if taken or cut.kept_bodies or cut.dropped_bodies:
                result = result._replace(
                    kept_bodies=result.kept_bodies + cut.kept_bodies + len(taken),
                    dropped_bodies=result.dropped_bodies + cut.dropped_bodies, timed_out=True)
            return result
        finally:
            try:  # even when Ctrl-C cuts the last flush short
                self.abandon()
            finally:
                self.closed = True
                if got_lock:
                    self._lock.release()
                self._close_transport(deadline)

    def _close_transport(self, deadline: float) -> None:
        """The transport's ``close()``, waited for until ``deadline``: a user's may block."""
        def close() -> None:
            try:
                self.transport.close()
            except Exception as error:  # a user's transport: close() still returns
                logger.error("the transport's close() failed (%s)", told(error, self.redact))

        closing = start_or_run(close, "impactagent-close")
        if closing is not None:
            closing.join(max(deadline - time.monotonic(), 0) + ANSWER_GRACE_SECONDS)

    def hurry(self, grace: float) -> None:
        """The process is ending: a flush running now ends at once (close's last one within
        ``grace`` seconds); a flush that begins later returns at once."""
        now = time.monotonic()
        until = now + grace
        self.ending = until if self.ending is None else min(self.ending, until)
        running = self._running
        if running is not None:
            running.hurry(self.ending if self.closing else now)

    def abandon(self) -> int:
        """Settle everything now: every open body and the recorder's rest are spooled or
        counted, and nothing is collected after. Returns the events set aside."""
        self.closing = True
        settled_by = time.monotonic() + _SETTLE_SECONDS  # what an answer is being kept as
        self._parcels.wait_answered(lambda: settled_by, answers=False)
        events = sum(parcel.events for parcel in self._take_all(close=True))
        snapshot = self.recorder.collect()
        drops = DropTally(self.drops)  # a failed build counts all it held as not delivered
        try:
            payloads = self._build_from(snapshot, drops)
        except Exception:
            logger.exception("building the last request bodies at close failed")
            self.recorder.restore(snapshot)  # written off below with the rest
            payloads = []
        else:
            tell = drops.commit()
            tell()
        for payload in payloads:
            if payload.events:  # an empty window: nothing was recorded, nothing to keep
                events += payload.events
                self._keep_body(Parcel(payload, None), final=True)
        rest = self.recorder.write_off()  # recorded meanwhile, or held for a later hour
        self._count_not_delivered(rest)
        return events + rest

    def _take_all(self, *, close: bool) -> List[Parcel]:
        """Keep every parcel still open or sending; return them."""
        taken = []
        for parcel, sending in self._parcels.take_all(close=close):
            taken.append(parcel)
            if isinstance(parcel.content, Snapshot):
                self.recorder.restore(parcel.content)  # collected again by close
                continue
            if sending:  # its POST may still reach the server
                self.ledger.add(POSSIBLY_DUPLICATED, parcel.events)
            kept_as = self._keep_body(parcel, final=close or self.closing)
            answer = self._parcels.kept(parcel, kept_as)
            if answer is not None:  # it came while the body was being kept
                self._late_answer(parcel, answer[0])
        return taken

    def _keeping(self) -> str:
        if self.spool is not None:
            later = "the next agent on it" if self.closing else "the next flushes"
            return f"spooled to {str(self.spool.directory)!r} for {later}"
        if self.closing:
            return f"counted as dropped ({NOT_DELIVERED_BY_CLOSE})"
        return "kept in memory for the next flushes"

    def _count_not_delivered(self, events: int) -> None:
        if not events:
            return
        why = (f"sending was stopped by HTTP {self.unauthorized}" if self.unauthorized
               else "they were recorded after close()" if self.closed
               else "the server did not take them before the close deadline")
        self.drops.add(NOT_DELIVERED_BY_CLOSE, events, detail=self.transport.metrics_url,
                       explained=True)
        logger.error("closing with %d events not delivered to %s (%s)%s; they are counted "
                     "as %r.", events, self.transport.metrics_url, why,
                     "" if self.spool is not None else " and no spool_dir to keep them",
                     NOT_DELIVERED_BY_CLOSE)

    def _tell_refused(self, outcome: Outcome) -> None:
        if not self.refusals.acquire(blocking=False):
            logger.warning("%s answered HTTP %s too: sending stops (recording goes on) until "
                           "the agent is restarted with a valid token.",
                           self.transport.metrics_url, outcome.status)
        else:
            logger.error("%s answered HTTP %s: the API token is missing, unknown or not a "
                         "client/backend token. Sending stops (recording goes on) until the "
                         "agent is restarted with a valid token.",
                         self.transport.metrics_url, outcome.status)

    def _replay_spool(self, run: _Run) -> bool:
        """Send spooled bodies oldest first; False if the server did not take one."""
        assert self.spool is not None
        for entry in self.spool.entries():
            if time.monotonic() >= run.deadline or run.stopping.is_set():
                run.timed_out = time.monotonic() >= run.deadline
                return False
            claimed = self.spool.claim(entry)
            if claimed is None:
                continue  # another process is sending it
            body = self.spool.read(claimed)
            if body is None:
                continue  # corrupt: moved aside and counted
            self._send(self._parcels.open(payload_from_document(json.loads(body)), claimed), run)
            if run.kept:
                return False
        return True

    def reset_after_fork(self, ledger: DeliveryLedger, identity: Identity) -> None:
        """In a forked child: new locks, no flush, its own ledger and connection."""
        self._lock = threading.Lock()
        self._parcels = Parcels()
        self._running = None
        self.ending = None  # a SIGTERM the parent got is the parent's
        self.closing = self.closed  # and so is a close another of its threads was running
        self.calls.reset_after_fork()
        self.ledger = ledger
        self.identity = identity
        self.health = Health(self.transport.metrics_url)
        try:
            self.transport.reset_after_fork(identity)
        except Exception as error:  # a user's transport: the child's reset must finish
            logger.error("the transport's reset_after_fork() failed in a forked child (%s); "
                         "it is used as it is", told(error, self.redact))


def _last(state: tenacity.RetryCallState) -> Outcome:
    assert state.outcome is not None
    outcome: Outcome = state.outcome.result()
    return outcome


class _BuildFailed(Exception):
    """Building bodies failed; the snapshot was restored."""


__all__: Tuple[str, ...] = ("Delivery", "FlushResult")
