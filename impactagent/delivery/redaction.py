"""Take secrets out of text before it can reach a log, a statistic or an exception message:
a server's answer may echo the token, an exception quote a proxy URL with its password.

>>> redact = Redactor(["default:production.s3cr3t"], ["Authorization"])
>>> redact('{"error": "bad body", "headers": {"authorization": "default:production.s3cr3t"}}')
'{"error": "bad body", "headers": {"authorization": "[REDACTED]"}}'
>>> redact("proxy http://admin:hunter2@proxy:3128 refused")
'proxy http://[REDACTED]@proxy:3128 refused'

Each secret is caught as sent and percent-, JSON- and HTML-escaped; one shorter than
:data:`MIN_SECRET_LENGTH` only next to its header's name.
"""

from __future__ import annotations

import html
import json
import re
from typing import Iterable, List, Mapping, Optional, Set
from urllib.parse import quote, quote_plus

REDACTED = "[REDACTED]"
MIN_SECRET_LENGTH = 4  # shorter secrets are redacted only where their header's name shows
SECRET_HEADERS = ("authorization", "proxy-authorization")  # whoever sends them

# "scheme://user:password@host": the userinfo goes, the rest stays readable.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@?#]*@")


class Redactor:
    """Replaces known secrets, and the values of named headers, in text."""

    def __init__(self, secrets: Iterable[str], header_names: Iterable[str] = ()) -> None:
        forms: Set[str] = set()
        for secret in secrets:
            forms.update(_forms(secret))
        self._forms = sorted((f for f in forms if len(f) >= MIN_SECRET_LENGTH),
                             key=len, reverse=True)
        self._secrets = (re.compile("|".join(re.escape(f) for f in self._forms), re.IGNORECASE)
                         if self._forms else None)
        names = {n.lower() for n in header_names} | set(SECRET_HEADERS)
        self._headers = _header_echo(sorted(names, key=len, reverse=True))

    @classmethod
    def for_credentials(cls, api_key: Optional[str], headers: Mapping[str, str]) -> Redactor:
        """The redactor of one agent's token, its secret part and custom headers' values."""
        secret = secret_part(api_key) if api_key else None
        return cls([*([api_key] if api_key else []), *([secret] if secret else []),
                    *headers.values()], ["Authorization", *headers])

    def __call__(self, text: str) -> str:
        if self._secrets is not None:
            text = self._secrets.sub(REDACTED, text)
        text = self._headers.sub(_redact_value, text)
        return _USERINFO.sub(lambda m: m.group(1) + REDACTED + "@", text)

    def cut(self, text: str, limit: int, *, whole: bool = True) -> str:
        """Redact ``text``, then shorten it to about ``limit`` characters. ``whole=False``:
        ``text`` was cut short already, so a tail that may begin a secret goes too."""
        # Bounded work on a huge answer; the window may cut through a secret too.
        window = text[:max(limit * 64, 65536)]
        if len(window) < len(text) or not whole:
            window = self._without_partial_tail(window)
        text = self(window).strip()
        return text if len(text) <= limit else text[:limit] + "..."

    def _without_partial_tail(self, text: str) -> str:
        longest = 0
        for form in self._forms:
            for size in range(min(len(form) - 1, len(text)), longest, -1):
                if text.endswith(form[:size]):
                    longest = size
                    break
        return text[:len(text) - longest]


def redact_url(url: str) -> str:
    """``url`` without its userinfo, query and fragment: safe to log."""
    url = _USERINFO.sub(lambda m: m.group(1), url, count=1)
    url = url.partition("#")[0]
    head, query, _ = url.partition("?")
    return head + ("?" + REDACTED if query else "")


def secret_part(token: str) -> Optional[str]:
    """The secret of an Unleash token (``project:environment.secret``): after the first dot."""
    _, dot, secret = token.partition(".")
    return secret if dot and secret else None


def _forms(secret: str) -> List[str]:
    """``secret`` as sent, and as an echo may spell it."""
    if not secret:
        return []
    escaped = json.dumps(secret)[1:-1]
    return [secret, quote(secret, safe=""), quote(secret), quote_plus(secret), escaped,
            escaped.replace("/", "\\/"), json.dumps(escaped)[1:-1],
            json.dumps(secret, ensure_ascii=False)[1:-1], html.escape(secret)]


def _header_echo(names: List[str]) -> re.Pattern[str]:
    """A header's value where its name shows it: ``Name: v``, ``"name": "v"``, ``name=v``,
    ``'name': 'v'``, ``["name", "v"]`` (Node's raw header list)."""
    alternatives = "|".join(re.escape(n) for n in names)
    return re.compile(
        r"(?P<name>(?<![\w-])[\"']?(?:" + alternatives + r")[\"']?)(?![\w-])"
        r"(?P<sep>\s*(?:=>|[:=,])\s*)"
        r"(?P<value>\"(?:[^\"\\\r\n]|\\.)*\"?|'(?:[^'\\\r\n]|\\.)*'?|[^\s,;&}<>\"']"
        r"[^\r\n,;&}<>\"']*)",
        re.IGNORECASE)


def _redact_value(match: re.Match[str]) -> str:
    value = match.group("value")
    quote_mark = value[0] if value[:1] in ("'", '"') else ""
    return match.group("name") + match.group("sep") + quote_mark + REDACTED + quote_mark
