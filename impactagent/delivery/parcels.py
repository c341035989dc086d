"""One owner and one state per body (a *parcel*: a body, or for a moment its snapshot),
changed in one place under one lock, so every body is settled exactly once::

    open ──> sending ──> settling ──> settled   (the flush that opened it settles it)
      │         │
      └─────────┴──> taken ──> settled          (close or SIGTERM kept it first; a late
                                                 2xx undoes that)
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import TYPE_CHECKING, Callable, Iterator, List, Optional, Set, Tuple, Union

from ..core.payload import Payload

if TYPE_CHECKING:
    from ..core.snapshot import Snapshot
    from ..core.statistics import DropTally
    from .deadline import Job
    from .spool import SpoolEntry
    from .transport_api import Outcome

_RECHECK_SECONDS = 0.05  # a deadline may move closer while one waits

OPEN = "open"
SENDING = "sending"
SETTLING = "settling"
TAKEN = "taken"
SETTLED = "settled"


class Parcel:
    """One body (or the snapshot it is built from) and its state."""

    __slots__ = ("answer", "claim", "content", "events", "in_flight", "kept", "kept_as",
                 "state")

    def __init__(self, content: Union[Payload, Snapshot], claim: Optional[SpoolEntry]) -> None:
        self.content = content
        self.claim = claim  # the spool file it was read from, claimed by this process
        self.events = getattr(content, "events", 0)
        self.state = OPEN
        #: How it was kept: the spool file written, the drop reason counted, or None
        #: (merged back into the recorder).
        self.kept_as: Union[SpoolEntry, str, None] = None
        self.in_flight: Optional[Job[Outcome]] = None  # its POST, when no answer came in time
        #: Taken: whether the taker has kept it yet, and an answer that came before then
        #: (a 1-tuple: the answer may be None, a call that raised).
        self.kept = False
        self.answer: Optional[Tuple[Optional[Outcome]]] = None

    @property
    def payload(self) -> Payload:
        assert isinstance(self.content, Payload)
        return self.content


class Parcels:
    """The parcels of one delivery that are open or sending."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)  # notified as each parcel settles
        self._unsettled: Set[Parcel] = set()
        self.closed = False

    def collect(self, take: Callable[[], Snapshot]) -> Optional[Parcel]:
        """Open a parcel for ``take()`` (the recorder's collect), atomically with respect to
        ``take_all``; None once closed."""
        with self._lock:
            return None if self.closed else self._open(take(), None)

    def open(self, content: Union[Payload, Snapshot], claim: Optional[SpoolEntry] = None) -> Parcel:
        with self._lock:
            return self._open(content, claim)

    def _open(self, content: Union[Payload, Snapshot], claim: Optional[SpoolEntry]) -> Parcel:
        parcel = Parcel(content, claim)
        self._unsettled.add(parcel)
        return parcel

    def replace(self, parcel: Parcel, payloads: List[Payload], drops: DropTally
                ) -> Optional[List[Parcel]]:
        """Swap a snapshot parcel for the parcels of its bodies, and count the ``drops`` its
        build made with that swap; None if it was taken (its taker builds and counts it)."""
        with self._lock:
            if parcel.state != OPEN:
                return None
            opened = [self._open(payload, None) for payload in payloads]
            parcel.state = SETTLED
            self._unsettled.discard(parcel)
            tell = drops.commit()
        tell()  # a log handler that raises leaves the bodies open, for the flush to keep
        return opened

    def start_sending(self, parcel: Parcel) -> bool:
        """open -> sending; False if it was taken (it must not be sent)."""
        with self._lock:
            if parcel.state != OPEN:
                return False
            parcel.state = SENDING
            return True

    @contextlib.contextmanager
    def settling(self, parcel: Parcel) -> Iterator[str]:
        """Settle ``parcel`` by its owner, who accounts for it (spools, counts, merges back)
        inside the block; yields the state it was in (``TAKEN``: the taker kept it;
        ``SETTLED``: taken before it was sent). Until the block ends it stays unsettled, so
        that a close waits for what it is kept as rather than ending the process meanwhile."""
        with self._lock:
            before = parcel.state
            if before in (OPEN, SENDING):
                parcel.state = SETTLING
            else:
                parcel.state = SETTLED
                self._unsettled.discard(parcel)
        try:
            yield before
        finally:
            with self._lock:
                if parcel.state == SETTLING:
                    parcel.state = SETTLED
                    self._unsettled.discard(parcel)
                self._settled.notify_all()

    def wait_answered(self, until: Callable[[], float], *, answers: bool = True) -> None:
        """Wait until no parcel is being settled, nor (``answers``) sending but those whose
        call is stuck, or ``until()``: an answer heard settles a body for sure, where one
        taken in flight stays in doubt."""
        with self._settled:
            while any(parcel.state == SETTLING
                      or (answers and parcel.state == SENDING
                          and not (parcel.in_flight is not None and parcel.in_flight.stuck()))
                      for parcel in self._unsettled):
                left = until() - time.monotonic()
                if left <= 0:
                    return
                self._settled.wait(min(left, _RECHECK_SECONDS))

    def kept(self, parcel: Parcel, kept_as: Union[SpoolEntry, str, None]
             ) -> Optional[Tuple[Optional[Outcome]]]:
        """The taker has kept ``parcel`` as ``kept_as``; returns the answer that came
        meanwhile, for the taker to settle."""
        with self._lock:
            parcel.kept_as, parcel.kept = kept_as, True
            answer, parcel.answer = parcel.answer, None
            return answer

    def hear(self, parcel: Parcel, answer: Optional[Outcome]) -> bool:
        """The answer to a taken parcel: True if its taker has kept it (settle the answer
        now); else it is left for the taker, which settles it once it has."""
        with self._lock:
            if parcel.kept:
                return True
            parcel.answer = (answer,)
            return False

    def take_all(self, *, close: bool = False) -> Iterator[Tuple[Parcel, bool]]:
        """Take each unsettled parcel, one at a time (a taker cut short leaves the rest):
        (parcel, whether its POST was in flight); ``close``: collect no more."""
        with self._lock:
            self.closed = self.closed or close
        while True:
            with self._lock:
                parcel = next((p for p in self._unsettled if p.state != SETTLING), None)
                if parcel is None:  # a parcel being settled is its owner's
                    return
                self._unsettled.discard(parcel)
                sending = parcel.state == SENDING
                parcel.state = TAKEN if sending else SETTLED
            yield parcel, sending
