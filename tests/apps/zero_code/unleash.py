"""The apps' own UnleashClient, made as the SDK's documentation shows, from the
environment; and the one thing the apps do with flags."""

import atexit
import os

from UnleashClient import UnleashClient

_client = None
_pid = None


def start():
    """Make and start this process's client (at import, or in a forked worker's hook)."""
    global _client, _pid
    _pid = os.getpid()
    _client = UnleashClient(
        url=os.environ["UNLEASH_URL"], app_name=os.environ["UNLEASH_APP_NAME"],
        custom_headers={"Authorization": os.environ["UNLEASH_API_TOKEN"]},
        metrics_interval=1, refresh_interval=60,
        disable_metrics=os.environ.get("SHOP_SDK_METRICS") == "off",
        cache_directory=os.environ.get("SHOP_CACHE_DIR"))
    _client.initialize_client()
    atexit.register(_client.destroy)  # the SDK sends its last counts when destroyed
    return _client


def stop():
    """Destroy this process's client: its last counts are sent."""
    _client.destroy()


def client():
    """This process's client, made on first use if no hook made it (runserver's child)."""
    return _client if _pid == os.getpid() else start()


def dark_mode(user):
    """'enabled' or 'disabled' for ``user``."""
    return "enabled" if client().is_enabled("dark-mode", {"userId": user}) else "disabled"


def checkout_variant(user):
    """The variant ``user`` gets ('blue', 'green'), or 'disabled'."""
    variant = client().get_variant("new-checkout", {"userId": user})
    if variant.get("enabled"):
        return variant["name"]
    return "enabled" if variant.get("feature_enabled") else "disabled"
