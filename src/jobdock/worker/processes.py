"""Several worker processes under one supervisor (`jobdock worker --processes N`).

Each child is a `jobdock worker --processes 1` of its own; a child that dies
(killed, crashed) is started again after a short pause, and the jobs it held
are rescued when their leases run out. SIGTERM or SIGINT is passed on to the
children, which finish their running jobs and give back the rest.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType

log = logging.getLogger("jobdock.worker")

RESTART_PAUSE_S = 1.0


class Supervisor:
    def __init__(self, child_args: Sequence[str], processes: int, burst: bool) -> None:
        self.command = [sys.executable, "-m", "jobdock", "worker", *child_args,
                        "--processes", "1"] + (["--burst"] if burst else [])
        self.processes = processes
        self.burst = burst
        self._children: list[subprocess.Popen[bytes] | None] = [None] * processes
        self._stopping = False

    def run(self) -> int:
        previous = {sig: signal.signal(sig, self._on_signal)
                    for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            for slot in range(self.processes):
                self._start(slot)
            return self._watch()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _start(self, slot: int) -> None:
        self._children[slot] = subprocess.Popen(self.command)
        log.info("started worker process %d", self._children[slot].pid)  # type: ignore[union-attr]

    def _watch(self) -> int:
        status = 0
        while True:
            alive = 0
            for slot, child in enumerate(self._children):
                if child is None:
                    continue
                code = child.poll()
                if code is None:
                    alive += 1
                    continue
                if self._stopping or (self.burst and code == 0):
                    # A child still starting when the stop came dies of the signal
                    # itself; that is a clean stop too.
                    self._children[slot] = None
                    if code not in (0, -signal.SIGTERM, -signal.SIGINT):
                        status = status or 1
                    continue
                log.warning("worker process %d exited with %s; starting another",
                            child.pid, code)
                time.sleep(RESTART_PAUSE_S)
                self._start(slot)
                alive += 1
            if alive == 0:
                return status
            time.sleep(0.2)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stopping = True
        for child in self._children:
            if child is not None and child.poll() is None:
                child.send_signal(signum)
