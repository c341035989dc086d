"""The admin client: impact-metric charts and the server's stats.

>>> from impactagent.admin import AdminClient
>>> AdminClient("https://unleash.example.com/api", "*:*.admin-token")
<AdminClient https://unleash.example.com>
"""

from .client import AdminClient, AdminError, InstanceStatistics, statistics_checksum

__all__ = ["AdminClient", "AdminError", "InstanceStatistics", "statistics_checksum"]
