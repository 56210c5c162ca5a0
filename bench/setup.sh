#!/usr/bin/env bash
# Bench-only virtualenv: jobdock (editable) + the peers it is compared with.
# Kept apart from .venv so that the peers never leak into the project's tests.
# Safe to run again: it only creates what is missing and upgrades the peers.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.bench-venv"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
# Latest releases of the peers (PgQueuer with asyncpg, its documented driver); psutil for RSS; py-spy for the profile section.
"$venv/bin/python" -m pip install --quiet --upgrade procrastinate "pgqueuer[asyncpg]" psutil py-spy
"$venv/bin/python" -m pip install --quiet -e "$root"

"$venv/bin/python" - <<'PY'
from importlib.metadata import version
for name in ("jobdock", "procrastinate", "pgqueuer", "psycopg", "asyncpg", "psutil", "py-spy"):
    try:
        print(f"{name:14} {version(name)}")
    except Exception:
        print(f"{name:14} (not installed)")
PY
