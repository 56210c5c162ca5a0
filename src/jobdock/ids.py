"""Job ids: 24 lowercase hex characters that sort by creation time.

Layout (12 bytes, like a MongoDB ObjectId, which the integrator and Conversio
dialects also render): 4 bytes of Unix seconds, 5 random bytes fixed per
process, 3 bytes of a counter that restarts at 0 every second. Ids made by
one process are strictly increasing (the clock going back does not make them
go back; more than 2**24 ids in one second borrow the next second); across
processes they sort by second and the random bytes keep them apart.
"""

from __future__ import annotations

import os
import re
import threading
import time

_ID_RE = re.compile(r"^[0-9a-f]{24}$")
_COUNTER_SPAN = 1 << 24

_lock = threading.Lock()
_process_hex = os.urandom(5).hex()
_second = 0  # the second of the last id made from the clock
_count = 0  # the next counter value within that second


def _reseed_after_fork() -> None:
    global _process_hex, _second, _count
    _process_hex = os.urandom(5).hex()
    _second, _count = 0, 0


os.register_at_fork(after_in_child=_reseed_after_fork)


def _reserve(n: int, now: float | None) -> tuple[int, int]:
    """Reserve `n` counter values; return (second, first counter value)."""
    global _second, _count
    if not 0 < n <= _COUNTER_SPAN:
        raise ValueError(f"can make 1 to {_COUNTER_SPAN} ids at once, not {n}")
    wanted = int(time.time() if now is None else now) & 0xFFFFFFFF
    with _lock:
        if wanted > _second:
            _second, _count = wanted, 0
        elif wanted < _second:
            # A `now` in the past (tests, imports) keeps its own second; the counter,
            # which only goes on, keeps those ids apart from the ones made before.
            first = _count if _count + n <= _COUNTER_SPAN else 0
            _count = first + n
            return wanted, first
        if _count + n > _COUNTER_SPAN:
            _second, _count = _second + 1, 0
        first = _count
        _count += n
        return _second, first


def new_id(now: float | None = None) -> str:
    """Return a new 24-hex id; `now` (Unix seconds) fixes its time part."""
    second, count = _reserve(1, now)
    return f"{second:08x}{_process_hex}{count:06x}"


def new_ids(n: int, now: float | None = None) -> list[str]:
    """Return `n` increasing ids at once (one lock, for bulk enqueue)."""
    if n == 0:
        return []
    second, first = _reserve(n, now)
    middle = f"{second:08x}{_process_hex}"
    return [f"{middle}{c:06x}" for c in range(first, first + n)]


def is_id(value: str) -> bool:
    """True when `value` has the shape of a job id."""
    return bool(_ID_RE.match(value))


def id_time(job_id: str) -> int:
    """The Unix second encoded in an id."""
    return int(job_id[:8], 16)
