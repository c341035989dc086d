"""Impact metrics beside an ``UnleashClient``: the SDK counts its own evaluations, so
:class:`FlagAwareClient` only notes each answer in the request's flag scope::

    unleash = FlagAwareClient(UnleashClient(url, "shop", custom_headers=...))
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional

from ..core.flag_context import flag_state, note_flag
from ..core.flag_decorator import evaluation


class FlagAwareClient:
    """Delegates to an ``UnleashClient`` and notes each answer in the flag scope."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def is_enabled(self, feature_name: str, context: Optional[Dict[str, Any]] = None,
                   fallback_function: Optional[Callable[..., bool]] = None) -> bool:
        enabled: bool = self.client.is_enabled(feature_name, context,
                                         fallback_function=fallback_function)
        note_flag(feature_name, flag_state(bool(enabled)))
        return enabled

    def get_variant(self, feature_name: str, context: Optional[Dict[str, Any]] = None
                    ) -> Dict[str, Any]:
        variant: Dict[str, Any] = self.client.get_variant(feature_name, context)
        note_flag(feature_name, flag_state(*evaluation(variant)))
        return variant

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)
