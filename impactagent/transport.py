"""One HTTP POST of one body, and what its answer means for the data in it.

The transport knows HTTP and the protocol's headers; it does not retry, sleep or decide
what to do with data. It returns an :class:`Outcome` saying which of the protocol's cases
the answer falls in, and never raises for network trouble.
"""

from __future__ import annotations

import logging
import time
from email.utils import parsedate_to_datetime
from typing import Dict, Mapping, NamedTuple, Optional, Union

import requests
from requests.adapters import HTTPAdapter

from ._version import __version__
from .payload import Identity

logger = logging.getLogger("impactagent")

#: What to do with a body after one attempt.
DELIVERED = "delivered"  # 2xx: the server has it
RETRY = "retry"  # network trouble, 404, 408, 429, 5xx: keep the data, try again later
REJECTED = "rejected"  # 400: the server will never take it; drop it, counted
UNAUTHORIZED = "unauthorized"  # 401/403: stop sending until reconfigured
TOO_LARGE = "too_large"  # 413: split it and send the halves

# Retry-After values above this are treated as this (a misconfigured proxy can say "1 day").
_MAX_RETRY_AFTER = 3600.0


class Outcome(NamedTuple):
    """The result of one POST: its class, the status (None without an answer) and why."""

    kind: str
    status: Optional[int] = None
    retry_after: Optional[float] = None
    detail: str = ""
    #: True when the request may have reached the server although no answer came back (a
    #: read timeout or a connection lost after sending): a retry could count it twice.
    maybe_delivered: bool = False


def parse_retry_after(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if moment is None:
            return None
        seconds = moment.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER)


def classify(status: int) -> str:
    """Map an HTTP status to what to do with the body."""
    if 200 <= status < 300:
        return DELIVERED
    if status == 400:
        return REJECTED
    if status in (401, 403):
        return UNAUTHORIZED
    if status == 413:
        return TOO_LARGE
    return RETRY  # 404, 408, 429, 5xx and anything unexpected: keep the data


class Transport:
    """POSTs bodies to ``{url}/client/metrics`` on one ``requests.Session``.

    Identification headers come from the agent's identity and cannot be overridden by
    custom ``headers``. The token is sent in ``Authorization`` and never appears in logs,
    reprs or the ``detail`` of an outcome.
    """

    def __init__(
        self,
        metrics_url: str,
        api_key: str,
        identity: Identity,
        *,
        flush_interval: float,
        headers: Optional[Mapping[str, str]] = None,
        verify: Union[bool, str] = True,
        proxies: Optional[Mapping[str, str]] = None,
    ) -> None:
        self.metrics_url = metrics_url
        self._api_key = api_key
        self._custom_headers = dict(headers or {})
        self._flush_interval = flush_interval
        self._verify = verify
        self._proxies = dict(proxies or {})
        self.identity = identity
        self._session = self._new_session()

    def _new_session(self) -> requests.Session:
        session = requests.Session()
        session.verify = self._verify
        if self._proxies:
            session.proxies.update(self._proxies)
        # Retries are ours (bounded by the flush deadline), not urllib3's.
        adapter = HTTPAdapter(max_retries=0, pool_connections=1, pool_maxsize=2)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return session

    def headers(self) -> Dict[str, str]:
        """The headers of every request (with the token: do not log this)."""
        identity = self.identity
        headers = dict(self._custom_headers)
        # Identification last: custom headers cannot override them (case-insensitively).
        fixed = {
            "Authorization": self._api_key,
            "Content-Type": "application/json",
            "User-Agent": f"impactagent/{__version__}",
            "unleash-appname": identity.app_name,
            "unleash-instanceid": identity.instance_id,
            "unleash-connection-id": identity.connection_id,
            "unleash-sdk": identity.sdk_version,
            "unleash-interval": str(int(self._flush_interval * 1000)),
            "Unleash-Client-Spec": identity.spec_version,
        }
        lowered = {k.lower() for k in fixed}
        headers = {k: v for k, v in headers.items() if k.lower() not in lowered}
        headers.update(fixed)
        return headers

    def post(self, body: bytes, timeout: float) -> Outcome:
        """Send one body, waiting at most about ``timeout`` seconds; never raises for I/O."""
        timeout = max(timeout, 0.001)
        try:
            # verify and proxies go on the request, not only the session: requests lets
            # REQUESTS_CA_BUNDLE and *_PROXY variables override session-level values.
            response = self._session.post(
                self.metrics_url, data=body, headers=self.headers(),
                timeout=(timeout, timeout), verify=self._verify, proxies=self._proxies or None,
            )
        except requests.exceptions.ConnectTimeout:
            return Outcome(RETRY, detail="connect timeout")
        except requests.exceptions.ReadTimeout:
            return Outcome(RETRY, detail="read timeout", maybe_delivered=True)
        except requests.exceptions.SSLError as error:
            return Outcome(RETRY, detail=f"TLS error: {_short(error)}")
        except requests.exceptions.ConnectionError as error:
            return Outcome(RETRY, detail=_connection_detail(error),
                           maybe_delivered=not _never_sent(error))
        except requests.exceptions.RequestException as error:
            return Outcome(RETRY, detail=f"{type(error).__name__}: {_short(error)}")
        with response:
            status = response.status_code
            kind = classify(status)
            detail = ""
            if kind != DELIVERED:
                detail = response.text[:500].strip()
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return Outcome(kind, status, retry_after, detail)

    def reset_after_fork(self, identity: Identity) -> None:
        """A forked child must not share the parent's sockets: new session, new identity."""
        self.identity = identity
        self._session = self._new_session()

    def close(self) -> None:
        self._session.close()

    def __repr__(self) -> str:
        return f"<Transport {self.metrics_url}>"


def _never_sent(error: Exception) -> bool:
    """True when the connection was never made (refused, DNS): the server has nothing."""
    reason = getattr(error.args[0], "reason", None) if error.args else None
    text = f"{type(reason).__name__} {reason}"
    return "NewConnectionError" in text or "NameResolutionError" in text


def _connection_detail(error: Exception) -> str:
    return "connection refused" if _never_sent(error) else f"connection error: {_short(error)}"


def _short(error: Exception) -> str:
    text = str(error)
    return text if len(text) <= 200 else text[:200] + "..."
