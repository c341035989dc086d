"""When to try again after failures: one immutable policy, as urllib3's ``Retry``."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Optional

_MAX_DOUBLINGS = 64  # 2.0 ** 1024 overflows


@dataclass(frozen=True)
class Backoff:
    """The wait after ``failures`` failures: drawn uniformly between ``least`` and
    ``min(most, first * 2 ** (failures - 1))``, and never under a server's ``Retry-After``."""

    first: float
    most: float
    least: float = 0.0

    def wait(self, failures: int, retry_after: float = 0.0,
             rng: Optional[random.Random] = None) -> float:
        top = min(self.most, self.first * 2.0 ** min(failures - 1, _MAX_DOUBLINGS))
        uniform = rng.uniform if rng is not None else random.uniform
        drawn = uniform(self.least, top) if top > self.least else self.least
        return max(drawn, retry_after)


__all__ = ("Backoff",)
