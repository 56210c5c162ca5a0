"""Job ids: 24 lowercase hex characters that sort by creation time.

Layout (12 bytes, like a MongoDB ObjectId, which the integrator and Conversio
dialects also render): 4 bytes of Unix seconds, 5 random bytes fixed per
process, 3 bytes of a counter that starts at a random value. Ids made by one
process in one second are strictly increasing; across processes they sort by
second.
"""

from __future__ import annotations

import itertools
import os
import re
import threading
import time

_ID_RE = re.compile(r"^[0-9a-f]{24}$")

_lock = threading.Lock()
_pid = os.getpid()
_process_bytes = os.urandom(5)
_counter = itertools.count(int.from_bytes(os.urandom(3), "big"))


def _reseed_after_fork() -> None:
    global _pid, _process_bytes, _counter
    _pid = os.getpid()
    _process_bytes = os.urandom(5)
    _counter = itertools.count(int.from_bytes(os.urandom(3), "big"))


os.register_at_fork(after_in_child=_reseed_after_fork)


def new_id(now: float | None = None) -> str:
    """Return a new 24-hex id; `now` (Unix seconds) fixes its time part."""
    seconds = int(time.time() if now is None else now) & 0xFFFFFFFF
    with _lock:
        count = next(_counter) & 0xFFFFFF
    return (seconds.to_bytes(4, "big") + _process_bytes + count.to_bytes(3, "big")).hex()


def new_ids(n: int, now: float | None = None) -> list[str]:
    """Return `n` increasing ids at once (one lock, for bulk enqueue)."""
    seconds = (int(time.time() if now is None else now) & 0xFFFFFFFF).to_bytes(4, "big").hex()
    middle = seconds + _process_bytes.hex()
    with _lock:
        counts = [next(_counter) & 0xFFFFFF for _ in range(n)]
    return [middle + format(c, "06x") for c in counts]


def is_id(value: str) -> bool:
    """True when `value` has the shape of a job id."""
    return bool(_ID_RE.match(value))


def id_time(job_id: str) -> int:
    """The Unix second encoded in an id."""
    return int(job_id[:8], 16)
