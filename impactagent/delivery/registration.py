"""Registration: ``POST {url}/client/register`` with the body the official SDKs send, so
that an app without an SDK is listed in the admin UI. The flusher registers when it starts
and retries at each interval after a failure that may pass; never after 400, 401 or 403."""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import datetime, timezone
from typing import Any, Dict, Optional, Set

from ..core.payload import Identity, iso_utc, milliseconds
from .deadline import FINISHED, CallThread
from .redaction import REDACTED
from .transport_api import (
    DELIVERED,
    REJECTED,
    RETRY,
    UNAUTHORIZED,
    Outcome,
    Redact,
    Registrar,
    checked,
    told,
)

logger = logging.getLogger(__name__)


class Registration:
    """One agent's registration: its body, its attempts and their outcome. ``refusals`` is
    shared with the agent's delivery, so that a refused token is explained once."""

    def __init__(self, transport: Registrar, *, identity: Identity, interval: float,
                 refusals: Optional[threading.Lock] = None,
                 redact: Redact = lambda text: REDACTED) -> None:
        self.transport = transport
        self._calls = CallThread("impactagent-register")  # attempt() ends by its timeout
        self._redact = redact
        self._said: Set[str] = set()  # what a faulty transport did, said once
        self.identity = identity
        self.refusals = refusals if refusals is not None else threading.Lock()
        self.interval = interval
        self.started = datetime.now(timezone.utc)
        self._lock = threading.Lock()
        self.registered = False
        self.stopped_by: Optional[int] = None
        self.attempts = 0
        self.failures: Dict[str, int] = {}
        self.last_error_detail: Optional[str] = None
        self.not_before = 0.0  # the server's Retry-After, as a time.monotonic()

    @property
    def due(self) -> bool:
        """Whether a registration is wanted now."""
        return (not self.registered and self.stopped_by is None
                and time.monotonic() >= self.not_before)

    def document(self) -> Dict[str, Any]:
        """The registration body, as the official SDKs send it."""
        return {**self.identity.fields(), "strategies": [], "started": iso_utc(self.started),
                "interval": milliseconds(self.interval)}

    def attempt(self, timeout: float) -> Optional[Outcome]:
        """POST the registration once, within ``timeout`` seconds; never raises. None when a
        bug got in the way (logged and counted)."""
        deadline = time.monotonic() + timeout
        try:
            body = json.dumps(self.document(), separators=(",", ":")).encode()
            how, job = self._calls.call(
                lambda: checked(lambda: self.transport.register(body, timeout),
                                self.transport, self._said, self._redact),
                lambda: deadline)
        except Exception as error:  # a bug must not reach the flusher's loop, nor stop it
            logger.error("registering failed unexpectedly (%s); will retry",
                         told(error, self._redact))
            self._failed("error", "error")
            return None
        outcome = job.result
        if how != FINISHED or outcome is None:
            outcome = Outcome(RETRY, detail="no answer by the deadline")
        if outcome.retry_after is not None:
            self.not_before = time.monotonic() + outcome.retry_after
        if outcome.kind == DELIVERED:
            with self._lock:
                self.attempts += 1
                self.registered = True
            logger.debug("registered with %s", self.transport.register_url)
        else:
            self._refused(outcome)
        return outcome

    def _refused(self, outcome: Outcome) -> None:
        """Count a failed attempt, and say so: once for a failure that may pass."""
        key = (str(outcome.status) if outcome.status is not None
               else outcome.detail.split(":")[0] or "error")
        first = self._failed(key, key if outcome.status is None else f"HTTP {outcome.status}")
        if outcome.kind in (UNAUTHORIZED, REJECTED):
            with self._lock:
                self.stopped_by = outcome.status
        if outcome.kind == UNAUTHORIZED and not self.refusals.acquire(blocking=False):
            logger.warning("%s answered HTTP %s to the registration too; it is not tried "
                           "again.", self.transport.register_url, outcome.status)
        elif outcome.kind in (UNAUTHORIZED, REJECTED):
            logger.error(
                "%s answered HTTP %s to the registration; it is not tried again (%s). "
                "Sending metrics does not depend on it. The server said: %s",
                self.transport.register_url, outcome.status,
                "the API token is missing, unknown or not a backend token"
                if outcome.kind == UNAUTHORIZED else "the server refuses the body",
                outcome.detail or "(nothing)")
        elif first:
            logger.warning(
                "registering with %s failed (%s); it is tried again at each interval until it "
                "succeeds. Sending metrics does not depend on it (its failures are logged apart).",
                self.transport.register_url, outcome.detail or f"HTTP {outcome.status}")

    def _failed(self, key: str, detail: str) -> bool:
        with self._lock:
            first = not self.failures
            self.attempts += 1
            self.failures[key] = self.failures.get(key, 0) + 1
            self.last_error_detail = detail
        return first

    def as_dict(self) -> Dict[str, Any]:
        with self._lock:
            return {"enabled": True, "registered": self.registered, "attempts": self.attempts,
                    "failures": dict(self.failures), "stopped_by_status": self.stopped_by,
                    "last_error_detail": self.last_error_detail}


def not_registering(enabled: bool) -> Dict[str, Any]:
    return {"enabled": enabled, "registered": False, "attempts": 0, "failures": {},
            "stopped_by_status": None, "last_error_detail": None}


__all__ = ("Registration",)
