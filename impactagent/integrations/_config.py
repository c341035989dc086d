"""One settings mapping for the Django and Flask integrations: Agent settings and options."""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Mapping, NamedTuple, Tuple

from ..agent import Agent
from ..core.reference import NoSuchAttribute, NotAReference, resolve
from ..delivery.settings import Settings, SettingsError
from .http_metrics import HTTP_BUCKETS

#: The integration's own keys; every other key is an :class:`~impactagent.Agent` setting.
OPTION_KEYS = ("agent", "flags", "prefix", "buckets")
_SETTING_KEYS = tuple(field.name for field in dataclasses.fields(Settings))


class IntegrationOptions(NamedTuple):
    """What a settings mapping says: the agent (an Agent, ``"module:attribute"`` naming one,
    or None: build it from ``agent_settings``), and how to label requests."""

    agent: Any
    agent_settings: Dict[str, Any]
    flags: Tuple[str, ...] = ()
    prefix: str = "http_server"
    buckets: Tuple[float, ...] = HTTP_BUCKETS

    @classmethod
    def split(cls, mapping: Mapping[str, Any], where: str = "IMPACTAGENT") -> IntegrationOptions:
        """Check every key (a typo must not pass silently) and split the mapping."""
        settings: Dict[str, Any] = {}
        for key, value in mapping.items():
            if key in _SETTING_KEYS:
                settings[key] = value
            elif key not in OPTION_KEYS:
                raise SettingsError(
                    f"{where}: unknown setting {key!r} (an Agent setting: "
                    f"{', '.join(_SETTING_KEYS[:2])}, ...; or {', '.join(OPTION_KEYS)})")
        agent = mapping.get("agent")
        if agent is not None and settings:
            raise SettingsError(f"{where}: give either 'agent' or the agent's settings "
                                f"({', '.join(sorted(settings))}), not both")
        if agent is None and "app_name" not in settings:
            raise SettingsError(f"{where}: 'app_name' is required (or 'agent': "
                                f"'package.module:attribute' naming your Agent)")
        flags = mapping.get("flags", ())
        if isinstance(flags, str):
            flags = (flags,)  # a lone name, not its letters
        return cls(agent=agent, agent_settings=settings, flags=tuple(flags),
                   prefix=mapping.get("prefix", "http_server"),
                   buckets=tuple(mapping.get("buckets", HTTP_BUCKETS)))

    def build_agent(self, where: str = "IMPACTAGENT") -> Agent:
        """The agent these options name, or a new one, started when it has a ``url``."""
        agent = self.agent
        if isinstance(agent, str):
            try:
                found = resolve(agent)
            except NotAReference:
                raise SettingsError(f"{where}: 'agent' must look like "
                                    f"'package.module:attribute', got {agent!r}") from None
            except NoSuchAttribute:
                found = None
            if not isinstance(found, Agent):
                raise SettingsError(f"{where}: {agent!r} is not an Agent ({found!r})")
            agent = found
        elif agent is None:
            agent = Agent(**self.agent_settings)
        elif not isinstance(agent, Agent):
            raise SettingsError(f"{where}: 'agent' must be an Agent or 'module:attribute', "
                                f"got {agent!r}")
        if agent.settings.url is not None:
            agent.start()  # idempotent: an agent the app started already stays as it is
        return agent


def scrape(agent: Agent, accept: str) -> Tuple[bytes, str]:
    """The Prometheus scrape of ``agent`` in the format ``accept`` asks for, and its type."""
    try:
        from prometheus_client.exposition import choose_encoder

        from ..prometheus.collector import registry_for
    except ImportError as error:
        raise ImportError("the Prometheus scrape needs prometheus_client: "
                          "pip install 'impactagent[prometheus]'") from error
    encoder, content_type = choose_encoder(accept)
    return encoder(registry_for(agent)), content_type
