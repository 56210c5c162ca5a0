"""`jobdock tenants/apps/keys` as an operator runs them, in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from jobdock.access import Access
from jobdock.errors import Unauthenticated
from jobdock.store import open_store


def run(tmp_path: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "JOBDOCK_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
           "JOBDOCK_BLOB_URL": f"file://{tmp_path / 'blobs'}", "COLUMNS": "200"}
    env.pop("JOBDOCK_APP", None)
    result = subprocess.run([sys.executable, "-m", "jobdock", *args], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    if check:
        assert result.returncode == 0, result.stderr + result.stdout
    return result


@pytest.fixture
def access(tmp_path: Path) -> Iterator[Access]:
    """The Python side of the CLI's store, to try the keys it prints."""
    run(tmp_path, "migrate")
    store = open_store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    # No key cache: these tests see `jobdock keys revoke` (another process) take
    # effect at once; the cache's delay is tested in tests/api/test_key_cache.py.
    yield Access(store, key_cache_s=0)
    store.close()


def test_an_operator_makes_a_key_that_works_until_revoked(tmp_path: Path,
                                                          access: Access) -> None:
    run(tmp_path, "tenants", "create", "acme")
    app_id = run(tmp_path, "apps", "create", "--tenant", "acme", "shop").stdout.strip()
    assert len(app_id) == 24
    created = run(tmp_path, "keys", "create", "--tenant", "acme", "--app", "shop",
                  "--scope", "jobs:read", "--scope", "jobs:write", "--expires-in", "30d")
    key = created.stdout.strip()
    assert created.stdout == key + "\n"  # the key alone: KEY=$(jobdock keys create ...)
    assert "shown only this once" in created.stderr

    principal = access.authenticate(key)
    assert (principal.tenant_id, principal.app_id, principal.scopes) == (
        "acme", app_id, frozenset({"jobs:read", "jobs:write"}))
    with pytest.raises(Unauthenticated, match="expired"):
        access.authenticate(key, now=datetime.now(UTC) + timedelta(days=30, minutes=1))

    listing = run(tmp_path, "keys", "list", "--tenant", "acme").stdout
    prefix = key.rsplit("_", 1)[0]
    assert prefix in listing and key.rsplit("_", 1)[1] not in listing
    details = json.loads(run(tmp_path, "keys", "list", "--json").stdout)
    assert [(k["prefix"], k["app_id"], k["state"]) for k in details] == [
        (prefix, app_id, "active")]
    assert "secret_hash" not in json.dumps(details)

    revoked = run(tmp_path, "keys", "revoke", prefix)
    assert principal.key_id in revoked.stdout
    with pytest.raises(Unauthenticated, match="revoked"):
        access.authenticate(key)
    details = json.loads(run(tmp_path, "keys", "list", "--json").stdout)
    assert details[0]["state"] == "revoked" and details[0]["revoked_at"]


def test_keys_create_json_and_defaults(tmp_path: Path, access: Access) -> None:
    made = json.loads(run(tmp_path, "keys", "create", "--json", "--name", "ci",
                          "--scope", "jobs:read,admin").stdout)
    assert made["tenant_id"] == "default" and made["app_id"] is None
    assert made["scopes"] == ["admin", "jobs:read"] and made["expires_at"] is None
    assert made["name"] == "ci" and made["state"] == "active"
    assert access.authenticate(made["key"]).key_id == made["id"]
    default = json.loads(run(tmp_path, "keys", "create", "--json").stdout)
    assert default["scopes"] == ["jobs:delete", "jobs:read", "jobs:write"]
    apps = json.loads(run(tmp_path, "apps", "list", "--json").stdout)
    assert apps == []
    run(tmp_path, "apps", "create", "web")
    listing = run(tmp_path, "apps", "list", "--tenant", "default").stdout
    assert "web" in listing
    revoked = run(tmp_path, "keys", "revoke", made["id"], "--tenant", "default")
    assert made["prefix"] in revoked.stdout


def test_mistakes_get_a_clear_message_exit_2_and_no_traceback(tmp_path: Path,
                                                              access: Access) -> None:
    run(tmp_path, "tenants", "create", "acme")
    run(tmp_path, "apps", "create", "-t", "acme", "shop")
    cases = [
        (("keys", "create", "--tenant", "ghost"), "tenant 'ghost' does not exist"),
        (("keys", "create", "-t", "acme", "--scope", "jobs:everything"), "unknown scope"),
        (("keys", "create", "-t", "acme", "--expires-in", "soon"), "invalid duration"),
        (("keys", "create", "-t", "acme", "--expires-in", "0"), "must be positive"),
        (("keys", "create", "-t", "acme", "--app", "nope"), "app 'nope' not found"),
        (("keys", "revoke", "0123456789abcdef01234567"), "not found"),
        (("keys", "list", "-t", "ghost"), "tenant 'ghost' does not exist"),
        (("apps", "create", "-t", "acme", "shop"), "already exists"),
        (("apps", "create", "-t", "acme", "bad/name"), "invalid app name"),
        (("apps", "create", "-t", "ghost", "shop"), "tenant 'ghost' does not exist"),
        (("keys", "create", "--app-spec", "no_such_module:app"), "cannot import"),
    ]
    for args, message in cases:
        result = run(tmp_path, *args, check=False)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr, (args, result.stderr)
        assert "jdk_" not in result.stdout, args
    assert access.list_keys() == []  # no mistake made a key
