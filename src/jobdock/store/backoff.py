"""Exponential backoff with jitter, shared by the engine's retries and the stores' rescue."""

from __future__ import annotations

import random


def backoff_s(attempt: int, base_s: float, max_s: float) -> float:
    """Delay before attempt `attempt + 1`: base * 2^(attempt-1), capped, with 50 to 100% jitter.

    Jitter spreads the retries of jobs that failed together (a database outage)
    so that they do not all come back in the same instant.
    """
    delay = min(base_s * 2.0 ** max(attempt - 1, 0), max_s)
    return delay * (0.5 + random.random() / 2)
