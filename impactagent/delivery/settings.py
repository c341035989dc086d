"""The agent's settings: validated once, at construction, with errors that name the setting."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Union
from urllib.parse import urlsplit, urlunsplit

from ..core._family import DEFAULT_MAX_SERIES
from ..core.flags import DEFAULT_MAX_FLAGS
from ..core.payload import DEFAULT_MAX_BYTES
from ..core.server_limits import MAX_APP_NAME_LENGTH, MAX_INSTANCE_ID_LENGTH
from .redaction import REDACTED, redact_url


class SettingsError(ValueError):
    """A missing or malformed setting; the message names it."""


def api_url(url: str) -> str:
    """The Unleash API base for ``url``, given with or without ``/api`` and a trailing ``/``.

    >>> api_url("https://unleash.example.com"), api_url("https://unleash.example.com/api/")
    ('https://unleash.example.com/api', 'https://unleash.example.com/api')
    """
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    if not path.endswith("/api"):
        path += "/api"
    return urlunsplit(parts._replace(path=path))


def token_problem(token: str) -> Optional[str]:
    """What keeps ``token`` from going into ``Authorization`` as it is, or None. The server
    takes ``<token>`` or ``Bearer <token>``; a space, a line break or a control character
    anywhere else (a copy from a file brings a line break) fails every request."""
    secret = token[len("Bearer "):] if token.startswith("Bearer ") else token
    if not secret:
        return "is 'Bearer ' without a token after it"
    if any(character.isspace() or not character.isprintable() for character in secret):
        return "has a space, a line break or a control character inside it"
    return None


def _positive(name: str, value: Any, *, integer: bool = False) -> None:
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise SettingsError(f"{name} must be a positive {'int' if integer else 'number'}, "
                            f"got {value!r}")
    if not (value > 0 and math.isfinite(value)):
        raise SettingsError(f"{name} must be positive, got {value!r}")


def _stored_identity(name: str, value: Optional[str], limit: Optional[int]) -> None:
    """Refuse what the server's column of ``name`` cannot hold: it answers 202, then loses
    the counts of every app written with it (``environment`` labels every impact metric)."""
    if value is None:
        return
    if limit is not None and len(value) > limit:
        raise SettingsError(f"{name} must be at most {limit} characters, the size of "
                            f"the Unleash server's column (a longer one makes it lose other "
                            f"apps' data too), got {len(value)}")
    bad = next((c for c in value if c < " " or c == "\x7f"), None)
    if bad is not None:
        raise SettingsError(f"{name} must not contain control characters (Unleash cannot "
                            f"store NUL, and a line break cannot go in a header), got "
                            f"{bad!r} in {value!r}")


def _copied_map(name: str, value: object, *, none_values: bool = False
                ) -> Optional[Dict[str, Any]]:
    """A copy of a str-to-str mapping (the caller's dict may change later), or None. The
    message never shows the value: a header or a proxy URL may hold a secret.
    ``none_values``: a value may be None (``requests`` reads ``{"https": None}`` as "no proxy
    for https, whatever ``HTTPS_PROXY`` says")."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise SettingsError(f"{name} must map names (str) to values (str), "
                            f"got {type(value).__name__}")
    for key, item in value.items():
        if not isinstance(key, str) or not (isinstance(item, str)
                                             or (none_values and item is None)):
            wrong = key if not isinstance(key, str) else item
            raise SettingsError(f"{name} must map names (str) to values (str), got a "
                                f"{type(wrong).__name__} {'name' if wrong is key else 'value'}")
    return dict(value)


def _names_only(mapping: Mapping[str, Any]) -> Dict[str, Optional[str]]:
    return {name: None if value is None else REDACTED for name, value in mapping.items()}


def _as_is(value: Any) -> Any:
    return value


#: How a setting that may hold a secret is shown in the settings' repr.
_CENSORED: Dict[str, Callable[[Any], Any]] = {"url": redact_url, "headers": _names_only,
                                              "proxies": _names_only}


@dataclass(frozen=True)
class Settings:
    """Everything an :class:`~impactagent.Agent` can be configured with, and the one place a
    default is written. ``url`` is the Unleash server or Edge, with or without ``/api``;
    without one the agent only records."""

    app_name: str
    environment: str = "default"
    url: Optional[str] = None
    api_key: Optional[str] = field(default=None, repr=False)  # never shown
    instance_id: Optional[str] = None
    flush_interval: float = 60.0
    request_timeout: float = 10.0
    shutdown_timeout: float = 5.0
    headers: Mapping[str, str] = field(default_factory=dict)
    verify: Union[bool, str] = True
    proxies: Optional[Mapping[str, Optional[str]]] = None
    spool_dir: Optional[str] = None
    spool_max_bytes: int = 50_000_000
    max_series_per_metric: int = DEFAULT_MAX_SERIES
    max_flags: int = DEFAULT_MAX_FLAGS
    max_payload_bytes: int = DEFAULT_MAX_BYTES
    handle_sigterm: bool = True  # see impactagent.delivery.lifecycle
    register: bool = True  # see impactagent.delivery.registration

    def __post_init__(self) -> None:
        # Copies: the caller's dict changed later must not change the frozen settings.
        object.__setattr__(self, "headers", _copied_map("headers", self.headers) or {})
        object.__setattr__(self, "proxies", _copied_map("proxies", self.proxies, none_values=True))
        self._check_identity()
        self._check_url()
        self._check_values()

    def __repr__(self) -> str:
        """The settings without their secrets: no token, the URL without its userinfo, and
        header and proxy names without their values (an ``Authorization`` header or a proxy's
        ``user:password@`` may hold one)."""
        shown = ((f.name, getattr(self, f.name)) for f in fields(self) if f.repr)
        return "Settings({})".format(", ".join(
            f"{name}={value if value is None else _CENSORED.get(name, _as_is)(value)!r}"
            for name, value in shown))

    def _check_identity(self) -> None:
        for name in ("app_name", "environment"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise SettingsError(f"{name} must be a non-empty string, got {value!r}")
        if self.instance_id is not None and not isinstance(self.instance_id, str):
            raise SettingsError(f"instance_id must be a string, got {self.instance_id!r}")
        for name, limit in (("app_name", MAX_APP_NAME_LENGTH),
                            ("instance_id", MAX_INSTANCE_ID_LENGTH), ("environment", None)):
            _stored_identity(name, getattr(self, name), limit)

    def _check_url(self) -> None:
        if self.url is None:
            return
        parts = urlsplit(self.url) if isinstance(self.url, str) else None
        if (parts is None or parts.scheme not in ("http", "https") or not parts.netloc
                or parts.query or parts.fragment):
            shown = redact_url(self.url) if parts is not None else self.url
            raise SettingsError(  # paths are appended to it: a query would swallow them
                f"url must be an http(s) URL without a query, such as "
                f"https://unleash.example.com, got {shown!r}")
        if self.api_key is None:
            raise SettingsError("api_key is required when url is set (a client token)")
        object.__setattr__(self, "url", api_url(self.url))

    def _check_values(self) -> None:
        if self.api_key is not None and (not isinstance(self.api_key, str)
                                         or not self.api_key.strip()):
            raise SettingsError("api_key must be a non-empty string")
        problem = None if self.api_key is None else token_problem(self.api_key)
        if problem:
            raise SettingsError(f"api_key {problem}; set it to the token alone")
        for name in ("flush_interval", "request_timeout", "shutdown_timeout"):
            _positive(name, getattr(self, name))
        for name in ("spool_max_bytes", "max_series_per_metric", "max_flags", "max_payload_bytes"):
            _positive(name, getattr(self, name), integer=True)
        for name in ("handle_sigterm", "register"):
            if not isinstance(getattr(self, name), bool):
                raise SettingsError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if not isinstance(self.verify, (bool, str)):
            raise SettingsError(f"verify must be True, False or a CA bundle path, "
                                f"got {self.verify!r}")
        if isinstance(self.verify, str) and not os.path.exists(self.verify):
            raise SettingsError(f"verify: CA bundle {self.verify!r} does not exist")

    @property
    def metrics_url(self) -> Optional[str]:
        """Where bodies are POSTed: ``{url}/client/metrics``."""
        return None if self.url is None else self.url.rstrip("/") + "/client/metrics"

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None, *,
                 own_transport: bool = False, **overrides: Any) -> Settings:
        """Read ``UNLEASH_*`` and ``IMPACTAGENT_*`` variables; ``overrides`` win over them.
        ``UNLEASH_API_TOKEN`` is required with ``UNLEASH_URL`` unless ``own_transport``."""
        values = {**_from_environment(os.environ if environ is None else environ), **overrides}
        sending = values.get("url") is not None and not own_transport
        for setting in ("api_key", "app_name") if sending else ("app_name",):
            if setting not in values:
                raise SettingsError(f"{_VARIABLES[setting][0]} is not set (needed for {setting})")
        try:
            return cls(**values)
        except SettingsError as error:
            raise SettingsError(_naming_the_variable(str(error), overrides)) from None


def _from_environment(env: Mapping[str, str]) -> Dict[str, Any]:
    values: Dict[str, Any] = {}
    for setting, (variable, parse) in _VARIABLES.items():
        raw = env.get(variable)
        if raw:
            try:
                values[setting] = parse(raw)
            except ValueError:
                raise SettingsError(f"{variable}={raw!r} is not a valid "
                                    f"{_KINDS[parse]}") from None
    return values


def _naming_the_variable(message: str, overrides: Mapping[str, Any]) -> str:
    """``message`` led by the variable the user would have to fix, not only the setting."""
    for setting, (variable, _) in _VARIABLES.items():
        if message.startswith(setting) and setting not in overrides:
            return f"{variable}: {message}"
    return message


def _boolean(raw: str) -> bool:
    value = _boolean_or_path(raw)
    if not isinstance(value, bool):
        raise ValueError(raw)
    return value


def _boolean_or_path(raw: str) -> Union[bool, str]:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    return raw


_KINDS: Dict[Callable[[str], Any], str] = {float: "number", int: "integer", _boolean: "boolean"}
_VARIABLES: Dict[str, Tuple[str, Callable[[str], Any]]] = {
    "url": ("UNLEASH_URL", str),
    "api_key": ("UNLEASH_API_TOKEN", str),
    "app_name": ("UNLEASH_APP_NAME", str),
    "environment": ("UNLEASH_ENVIRONMENT", str),
    "instance_id": ("UNLEASH_INSTANCE_ID", str),
    "flush_interval": ("IMPACTAGENT_FLUSH_INTERVAL", float),
    "request_timeout": ("IMPACTAGENT_REQUEST_TIMEOUT", float),
    "shutdown_timeout": ("IMPACTAGENT_SHUTDOWN_TIMEOUT", float),
    "verify": ("IMPACTAGENT_VERIFY", _boolean_or_path),
    "spool_dir": ("IMPACTAGENT_SPOOL_DIR", str),
    "spool_max_bytes": ("IMPACTAGENT_SPOOL_MAX_BYTES", int),
    "max_series_per_metric": ("IMPACTAGENT_MAX_SERIES", int),
    "max_flags": ("IMPACTAGENT_MAX_FLAGS", int),
    "max_payload_bytes": ("IMPACTAGENT_MAX_PAYLOAD_BYTES", int),
    "handle_sigterm": ("IMPACTAGENT_HANDLE_SIGTERM", _boolean),
    "register": ("IMPACTAGENT_REGISTER", _boolean),
}
