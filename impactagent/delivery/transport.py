"""The default transport: one HTTP POST of one body, and what its answer means for the data.

It does not retry, sleep or decide what to do with data, and never raises for network
trouble. Redirects are never followed (a redirected POST can be answered 200 by a login
page, or carry the body to another origin): a 3xx keeps the data and is logged once. What
the server or an exception says is redacted before it becomes an outcome's detail.
"""

from __future__ import annotations

import logging
import time
from email.utils import parsedate_to_datetime
from typing import Any, Dict, Mapping, Optional, Tuple, Union
from urllib.parse import urljoin

import requests
from requests.adapters import HTTPAdapter

from .._version import __version__
from ..core.payload import Identity, milliseconds
from .redaction import Redactor, redact_url
from .transport_api import (  # re-exported: the names a transport's author needs
    DELIVERED,
    MAX_RETRY_AFTER,
    REJECTED,
    RETRY,
    TOO_LARGE,
    UNAUTHORIZED,
    BaseTransport,
    Outcome,
    Registrar,
    Sender,
    Transport,
    as_transport,
    is_redirect,
)

logger = logging.getLogger(__name__)

_DETAIL_LIMIT = 500  # characters of a server's answer kept in a detail
_ERROR_TEXT_LIMIT = 200  # and of an exception's text
_METRICS_PATH = "/client/metrics"
_REGISTER_PATH = "/client/register"


def parse_retry_after(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:  # a date whose year or zone overflows is garbage too, never an error
            moment = parsedate_to_datetime(value)  # raises on garbage since Python 3.10
            seconds = moment.timestamp() - (time.time() if now is None else now)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def classify(status: int) -> str:
    """What to do with the body after an HTTP status (a 3xx is never followed)."""
    if 200 <= status < 300:
        return DELIVERED
    if status == 400:
        return REJECTED
    if status in (401, 403):
        return UNAUTHORIZED
    if status == 413:
        return TOO_LARGE
    return RETRY


class HttpTransport:
    """POSTs bodies to ``{url}/client/metrics`` (and registrations to ``{url}/client/register``)
    on one ``requests.Session``. Custom ``headers`` cannot override the identification ones;
    the token and their values never appear in logs, reprs or an outcome's detail."""

    def __init__(self, metrics_url: str, api_key: str, identity: Identity, *,
                 flush_interval: float, headers: Optional[Mapping[str, str]] = None,
                 verify: Union[bool, str] = True,
                 proxies: Optional[Mapping[str, Optional[str]]] = None) -> None:
        self._url = metrics_url
        self.metrics_url = redact_url(metrics_url)
        register_url = (metrics_url[:-len(_METRICS_PATH)] + _REGISTER_PATH
                        if metrics_url.endswith(_METRICS_PATH) else None)
        self._register_url = register_url
        self.register_url = None if register_url is None else redact_url(register_url)
        self._api_key = api_key
        self._custom_headers = dict(headers or {})
        self._redact = Redactor.for_credentials(api_key, self._custom_headers)
        self._redirect_logged = False
        self._flush_interval = flush_interval
        self._verify = verify
        # Any: requests takes a None value (no proxy for that scheme); its stubs say str.
        self._proxies: Dict[str, Any] = dict(proxies or {})
        self.identity = identity
        self._session = self._new_session()

    def _new_session(self) -> requests.Session:
        session = _NeverRedirected()
        session.verify = self._verify
        # An auth that changes nothing: requests consults ~/.netrc, whose Basic credentials
        # would replace the token, only when no auth is set.
        session.auth = lambda request: request
        if self._proxies:
            session.proxies.update(self._proxies)
        # Retries are ours (bounded by the flush deadline), not urllib3's.
        adapter = HTTPAdapter(max_retries=0, pool_connections=1, pool_maxsize=2)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return session

    def headers(self) -> Dict[str, Union[str, bytes]]:
        """The headers of every request (with the token: do not log this); a value latin-1
        cannot carry goes as its UTF-8 bytes."""
        identity = self.identity
        fixed = {
            "Authorization": self._api_key,
            "Content-Type": "application/json",
            "User-Agent": f"impactagent/{__version__}",
            "unleash-appname": identity.app_name,
            "unleash-instanceid": identity.instance_id,
            "unleash-connection-id": identity.connection_id,
            "unleash-sdk": identity.sdk_version,
            "unleash-interval": str(milliseconds(self._flush_interval)),
            "Unleash-Client-Spec": identity.spec_version,
        }
        lowered = {k.lower() for k in fixed}
        result: Dict[str, Union[str, bytes]] = {
            k: v for k, v in self._custom_headers.items() if k.lower() not in lowered}
        result.update((k, _header_value(v)) for k, v in fixed.items())
        return result

    def post(self, body: bytes, timeout: float) -> Outcome:
        """Send one metrics body within about ``timeout`` seconds; never raises for I/O."""
        return self._post(self._url, _METRICS_PATH, body, timeout)

    def register(self, body: bytes, timeout: float) -> Outcome:
        """Send one registration body, as :meth:`post` sends metrics."""
        if self._register_url is None:
            return Outcome(RETRY, detail="no registration URL")
        return self._post(self._register_url, _REGISTER_PATH, body, timeout)

    def _post(self, url: str, path: str, body: bytes, timeout: float) -> Outcome:
        timeout = max(timeout, 0.001)
        until = time.monotonic() + timeout
        try:
            # verify and proxies on the request: REQUESTS_CA_BUNDLE and *_PROXY override the
            # session's. max_redirects=0 would raise on a 3xx even unfollowed. stream=True:
            # the status line decides, so a 2xx whose body then breaks is still delivered.
            response = self._session.post(
                url, data=body, headers=self.headers(), allow_redirects=False, stream=True,
                timeout=(timeout, timeout), verify=self._verify, proxies=self._proxies or None)
        except requests.exceptions.ConnectTimeout:
            return Outcome(RETRY, detail="connect timeout")
        except requests.exceptions.ReadTimeout:
            return Outcome(RETRY, detail="read timeout", maybe_delivered=True)
        except requests.exceptions.SSLError as error:
            return Outcome(RETRY, detail=f"TLS error: {self._short(error)}")
        except requests.exceptions.ConnectionError as error:
            never_sent = _never_sent(error)
            detail = ("connection refused" if never_sent
                      else f"connection error: {self._short(error)}")
            return Outcome(RETRY, detail=detail, maybe_delivered=not never_sent)
        except requests.exceptions.RequestException as error:
            return Outcome(RETRY, detail=f"{type(error).__name__}: {self._short(error)}")
        with response:
            status = response.status_code
            try:  # the status line decided: what follows cannot undo it
                detail, retry_after = self._answer_says(url, path, response, until)
            except Exception as error:
                detail, retry_after = f"unreadable answer ({type(error).__name__})", None
        return Outcome(classify(status), status, retry_after, detail)

    def _answer_says(self, url: str, path: str, response: requests.Response, until: float
                     ) -> Tuple[str, Optional[float]]:
        """What an answer says besides its status: a failure's detail, and a Retry-After."""
        status = response.status_code
        detail = ""
        if is_redirect(status):
            detail = self._redirected(url, path, status, response.headers.get("Location"))
        elif classify(status) != DELIVERED:
            detail = self._answer_text(response, until)
        return detail, parse_retry_after(response.headers.get("Retry-After"))

    def _answer_text(self, response: requests.Response, until: float) -> str:
        """A failure's answer, redacted and cut short: what arrives by ``until``, read a piece
        at a time, so that a trickling answer cannot turn the status into no answer."""
        raw, chunks, size, ended = response.raw, [], 0, False
        sock = getattr(getattr(raw, "connection", None), "sock", None)
        one_read = hasattr(raw, "read1")  # urllib3 2; with 1.26, a byte at a time
        try:
            while size < _DETAIL_LIMIT * 4 and time.monotonic() < until:
                if sock is not None:  # no single read waits past the deadline either
                    sock.settimeout(max(until - time.monotonic(), 0.001))
                chunk = (raw.read1(_DETAIL_LIMIT * 4 - size, decode_content=True) if one_read
                         else raw.read(1, decode_content=True))
                if not chunk:
                    ended = True
                    break
                chunks.append(chunk)
                size += len(chunk)
        except Exception:
            pass  # what came before is the detail
        text = b"".join(chunks)
        try:
            decoded = text.decode(response.encoding or "utf-8", "replace")
        except LookupError:  # a charset no codec has: the text is still worth showing
            decoded = text.decode("utf-8", "replace")
        return self._redact.cut(decoded, _DETAIL_LIMIT, whole=ended)

    def _redirected(self, url: str, path: str, status: int, location: Optional[str]) -> str:
        """The detail of a 3xx, logged the first time: the ``url`` setting needs fixing."""
        target = (self._redact(redact_url(_joined(url, location))) if location
                  else "(no Location header)")
        if not self._redirect_logged:
            self._redirect_logged = True
            suggestion = "an address that answers the POST itself"
            if location and target.endswith(path):
                suggestion = f"url={target[:-len(path)]!r}"
            logger.error(
                "%s answered HTTP %d redirecting to %s. Redirects are not followed (a redirected "
                "POST is lost, or sent where it should not go), so nothing is delivered; the data "
                "is kept and retried. Fix the agent's url (http:// to https://, or a missing "
                "/api, say): %s.", redact_url(url), status, target, suggestion)
        return f"redirect to {target}"

    def _short(self, error: Exception) -> str:
        return self._redact.cut(str(error), _ERROR_TEXT_LIMIT)

    def reset_after_fork(self, identity: Identity) -> None:
        """A forked child must not share the parent's sockets."""
        self.identity = identity
        self._session = self._new_session()

    def close(self) -> None:
        self._session.close()

    def __repr__(self) -> str:
        return f"<HttpTransport {self.metrics_url}>"


class _NeverRedirected(requests.Session):
    """A session that never reads where a redirect points: requests parses a ``Location``
    even unfollowed, and raised on one that is no URL (``http://[``)."""

    def get_redirect_target(self, resp: requests.Response) -> Optional[str]:
        return None


def _joined(url: str, location: str) -> str:
    """Where a ``Location`` points from ``url``; as it is when it is no URL."""
    try:
        return urljoin(url, location)
    except ValueError:
        return location


def _never_sent(error: Exception) -> bool:
    """True when the connection was never made (refused, DNS): the server has nothing."""
    reason = getattr(error.args[0], "reason", None) if error.args else None
    text = f"{type(reason).__name__} {reason}"
    return "NewConnectionError" in text or "NameResolutionError" in text


def _header_value(value: str) -> Union[str, bytes]:
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode()
    return value


__all__ = ("DELIVERED", "REJECTED", "RETRY", "TOO_LARGE", "UNAUTHORIZED", "BaseTransport",
           "HttpTransport", "Outcome", "Registrar", "Sender", "Transport", "as_transport",
           "classify", "parse_retry_after")
