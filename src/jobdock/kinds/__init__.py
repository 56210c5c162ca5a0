"""Built-in job kinds, registered in every App."""

from __future__ import annotations

from jobdock.engine import KindSpec
from jobdock.kinds.sleep import SleepInput, sleep
from jobdock.worker.runner import JobFunction

BUILTIN: list[tuple[KindSpec, JobFunction]] = [
    (KindSpec("sleep", max_attempts=1, input_model=SleepInput,
              description="Sleep with progress; honours cancel. For demos and health checks."),
     sleep),
]
