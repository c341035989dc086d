"""One flush: send what was recorded, and account for every count whatever the answer.

A flush runs on the flusher thread (or on the caller's, for ``flush()`` and ``close()``):

1. replay bodies left in the spool, oldest first;
2. collect a snapshot and build its bodies (none over the size limit);
3. send each body, retrying network trouble, 429 and 5xx with full jitter and honouring
   ``Retry-After``, never past the flush's deadline;
4. settle each body: delivered; kept for later (spooled, or merged back into the recorder);
   split and resent (413); or dropped and counted (400, or too large even alone).
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from typing import TYPE_CHECKING, List, NamedTuple, Optional

import tenacity

from .payload import Payload, build_payloads, count_events, payload_from_document, split_payload
from .recorder import Recorder
from .statistics import DeliveryLedger, DropCounter
from .transport import DELIVERED, REJECTED, RETRY, TOO_LARGE, UNAUTHORIZED, Outcome, Transport

if TYPE_CHECKING:
    from .spool import Spool

logger = logging.getLogger("impactagent")

#: Full-jitter retry waits inside one flush: uniform(0, min(cap, base * 2**attempt)).
RETRY_BASE_SECONDS = 0.5
RETRY_CAP_SECONDS = 30.0


class FlushResult(NamedTuple):
    """What one flush did, in bodies and in recorded events."""

    delivered_bodies: int = 0
    kept_bodies: int = 0  # not delivered: spooled or merged back for the next flush
    dropped_bodies: int = 0  # refused by the server for good (400, too large): counted
    delivered_events: int = 0
    retries: int = 0
    timed_out: bool = False  # the deadline ran out before everything was tried
    skipped: str = ""  # why nothing was sent, if nothing was

    @property
    def ok(self) -> bool:
        """True when everything collected was delivered."""
        return not (self.kept_bodies or self.dropped_bodies or self.timed_out or self.skipped)

    @property
    def server_unavailable(self) -> bool:
        """True when bodies were kept because the server could not take them now."""
        return self.kept_bodies > 0


class _Tally:
    """Counts for one flush, turned into a :class:`FlushResult` at the end."""

    def __init__(self) -> None:
        self.delivered = self.kept = self.dropped = self.events = self.retries = 0
        self.timed_out = False
        self.retry_after = 0.0

    def result(self, skipped: str = "") -> FlushResult:
        return FlushResult(self.delivered, self.kept, self.dropped, self.events, self.retries,
                           self.timed_out, skipped)


class Delivery:
    """Sends snapshots of a :class:`Recorder` through a :class:`Transport`."""

    def __init__(
        self,
        recorder: Recorder,
        transport: Transport,
        *,
        request_timeout: float,
        max_payload_bytes: int,
        ledger: DeliveryLedger,
        drops: DropCounter,
        spool: Optional[Spool] = None,
    ) -> None:
        self.recorder = recorder
        self.transport = transport
        self.request_timeout = request_timeout
        self.max_payload_bytes = max_payload_bytes
        self.ledger = ledger
        self.drops = drops
        self.spool = spool
        self.stopping = threading.Event()  # the current flush's interrupt
        #: Set after a 401/403: sending stops (recording goes on) until reconfigured.
        self.unauthorized: Optional[int] = None
        self.lock = threading.Lock()  # one flush at a time
        self.last_retry_after = 0.0

    def flush(self, deadline: float, interrupt: Optional[threading.Event] = None
              ) -> FlushResult:
        """Run one flush that ends by ``deadline`` (a ``time.monotonic()`` value).

        Setting ``interrupt`` cuts retry waits short and stops further retries; each body
        still gets its attempt, so a flush interrupted by shutdown still tries everything.
        """
        if not self.lock.acquire(timeout=max(deadline - time.monotonic(), 0)):
            return FlushResult(timed_out=True, skipped="another flush is still running")
        self.stopping = interrupt if interrupt is not None else threading.Event()
        try:
            return self._flush(deadline)
        finally:
            self.lock.release()

    def _flush(self, deadline: float) -> FlushResult:
        tally = _Tally()
        if self.unauthorized is not None:
            return tally.result(skipped=f"stopped after HTTP {self.unauthorized}")
        # If the server is not taking the spool's backlog, keep the new window as well.
        backlog_sent = self.spool is None or self._replay_spool(deadline, tally)
        payloads = self._collect()
        for index, payload in enumerate(payloads):
            try:
                if not backlog_sent or tally.kept or self.unauthorized is not None:
                    self._keep(payload, tally)  # it failed a moment ago: do not hammer it
                else:
                    self._settle(payload, self._send(payload, deadline, tally), deadline,
                                 tally)
            except Exception:
                # A bug must not lose what was collected: keep the bodies not yet settled
                # for the next flush (at worst this one is sent twice), then let it be seen.
                for rest in payloads[index:]:
                    self._keep(rest, tally)
                raise
        self.last_retry_after = tally.retry_after  # the flusher never undercuts it
        return tally.result()

    def _collect(self) -> List[Payload]:
        identity = self.transport.identity
        return build_payloads(self.recorder.collect(), identity,
                              max_bytes=self.max_payload_bytes, drops=self.drops)

    # -- sending one body, with retries inside the deadline ----------------------------------

    def _send(self, payload: Payload, deadline: float, tally: _Tally) -> Outcome:
        events = count_events(payload.document)

        def attempt() -> Outcome:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return Outcome(RETRY, detail="flush deadline reached")
            outcome = self.transport.post(payload.body, min(self.request_timeout, remaining))
            self.ledger.attempt(outcome)
            if outcome.maybe_delivered:
                # The server may have stored it; resending may count it twice. Say so.
                self.ledger.add("possibly_duplicated_events", events)
            return outcome

        def wait(state: tenacity.RetryCallState) -> float:
            outcome: Outcome = state.outcome.result()  # type: ignore[union-attr]
            if outcome.retry_after is not None:
                tally.retry_after = max(tally.retry_after, outcome.retry_after)
                return outcome.retry_after
            ceiling = min(RETRY_CAP_SECONDS, RETRY_BASE_SECONDS * 2 ** state.attempt_number)
            return random.uniform(0, ceiling)

        def give_up(state: tenacity.RetryCallState) -> bool:
            upcoming = state.upcoming_sleep or 0.0
            return self.stopping.is_set() or time.monotonic() + upcoming >= deadline

        def before_sleep(state: tenacity.RetryCallState) -> None:
            tally.retries += 1
            self.ledger.add("retries")

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_result(lambda outcome: outcome.kind == RETRY),
            wait=wait,
            stop=give_up,
            sleep=self._pause,  # close() cuts a retry wait short
            before_sleep=before_sleep,
            retry_error_callback=lambda state: state.outcome.result(),  # type: ignore
        )
        outcome: Outcome = retrying(attempt)
        if outcome.kind == RETRY and time.monotonic() >= deadline:
            tally.timed_out = True
        return outcome

    def _pause(self, seconds: float) -> None:
        """Sleep between retries, waking at once when close() sets ``stopping``."""
        self.stopping.wait(seconds)

    # -- what happens to a body after its last attempt ---------------------------------------

    def _settle(self, payload: Payload, outcome: Outcome, deadline: float, tally: _Tally) -> None:
        events = count_events(payload.document)
        if outcome.kind == DELIVERED:
            tally.delivered += 1
            tally.events += events
            self.ledger.delivered(events)
        elif outcome.kind == REJECTED:
            tally.dropped += 1
            logger.error(
                "impactagent: %s answered HTTP 400 to a metrics body of %d bytes; dropping its "
                "%d events (counted as 'rejected_by_server'). The server said: %s",
                self.transport.metrics_url, len(payload.body), events,
                outcome.detail or "(nothing)",
            )
            self.drops.add("rejected_by_server", events, detail=self.transport.metrics_url)
        elif outcome.kind == TOO_LARGE:
            halves = split_payload(payload)
            if len(halves) == 1:
                tally.dropped += 1
                self.drops.add("too_large", events, detail=self.transport.metrics_url)
                return
            for half in halves:
                self._settle(half, self._send(half, deadline, tally), deadline, tally)
        elif outcome.kind == UNAUTHORIZED:
            self._stop_sending(outcome)
            self._keep(payload, tally)
        else:
            self._keep(payload, tally)

    def set_aside(self) -> int:
        """At close: put what could not be delivered where it is not lost silently.

        With a spool, the rest goes to disk and the next agent on the same ``spool_dir``
        sends it (after a restart with a valid token, say). Without one, it is counted as
        dropped (``not_delivered_by_close``) and logged. Returns the events set aside.
        """
        events = 0
        for payload in self._collect():
            carried = count_events(payload.document)
            if carried == 0:
                continue  # an empty window: nothing was recorded in it, nothing to keep
            events += carried
            if self.spool is not None:
                self.spool.write(payload.body)
        if events and self.spool is None:
            why = (f"sending was stopped by HTTP {self.unauthorized}" if self.unauthorized
                   else "the server did not take them before the close deadline")
            logger.error("impactagent: closing with %d events not delivered to %s (%s) and no "
                         "spool_dir to keep them; they are counted as 'not_delivered_by_close'.",
                         events, self.transport.metrics_url, why)
            self.drops.add("not_delivered_by_close", events, detail=self.transport.metrics_url)
        return events

    def _stop_sending(self, outcome: Outcome) -> None:
        if self.unauthorized is None:
            logger.error(
                "impactagent: %s answered HTTP %s: the API token is missing, unknown or not a "
                "client/backend token. Sending stops (recording goes on) until the agent is "
                "restarted with a valid token.",
                self.transport.metrics_url, outcome.status,
            )
        self.unauthorized = outcome.status

    def _keep(self, payload: Payload, tally: _Tally) -> None:
        """Hold on to a body that was not delivered: on disk if spooling, else merged back."""
        tally.kept += 1
        if self.spool is not None:
            self.spool.write(payload.body)
            return
        part = payload.part()
        if part is not None:
            self.recorder.restore(part)

    # -- the spool's backlog -----------------------------------------------------------------

    def _replay_spool(self, deadline: float, tally: _Tally) -> bool:
        """Send spooled bodies oldest first; False if the server did not take one."""
        assert self.spool is not None
        for entry in self.spool.entries():
            if time.monotonic() >= deadline or self.stopping.is_set():
                tally.timed_out = time.monotonic() >= deadline
                return False
            claimed = self.spool.claim(entry)
            if claimed is None:
                continue  # another process (a forked sibling) is sending it
            body = self.spool.read(claimed)
            if body is None:
                continue  # corrupt: moved aside and counted
            payload = payload_from_document(json.loads(body))
            outcome = self._send(payload, deadline, tally)
            if outcome.kind in (RETRY, UNAUTHORIZED):
                # Back in the queue at its old place: it stays the oldest and goes first.
                self.spool.release(claimed)
                if outcome.kind == UNAUTHORIZED:
                    self._stop_sending(outcome)
                tally.kept += 1
                return False
            # Delivered, dropped (counted) or split (failed halves are spooled anew): only
            # now is the file done with. A kill -9 before this line resends, never loses.
            self._settle(payload, outcome, deadline, tally)
            self.spool.remove(claimed)
        return True
