#!/usr/bin/env bash
# Extra packages for bench/ingest_bench.py's comparison route (pandas read_csv + to_sql),
# installed into the bench-only virtualenv that bench/setup.sh makes. The jobdock side of
# that benchmark runs from the project's .venv and needs nothing more than it has.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.bench-venv"
[ -x "$venv/bin/python" ] || bash "$root/bench/setup.sh"
"$venv/bin/python" -m pip install --quiet --upgrade pandas sqlalchemy pyarrow psutil
"$venv/bin/python" - <<'PY'
from importlib.metadata import version
for name in ("pandas", "sqlalchemy", "pyarrow", "psycopg", "psutil"):
    print(f"{name:12} {version(name)}")
PY
