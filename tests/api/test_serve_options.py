"""`jobdock serve`: no access log unless --access-log (a line per request was 4-5% of a
GET's CPU). uvicorn.run is replaced by a recorder: no server is started."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import uvicorn
from typer.testing import CliRunner

from jobdock.cli_commands import cli


@pytest.mark.parametrize(("args", "logged"), [([], False), (["--access-log"], True),
                                              (["--no-access-log"], False)])
def test_serve_logs_requests_only_when_asked(args: list[str], logged: bool, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JOBDOCK_DATABASE_URL", f"sqlite:///{tmp_path / 'jobs.db'}")
    monkeypatch.setenv("JOBDOCK_DATA_DIR", str(tmp_path / "data"))
    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: seen.update(options))
    result = CliRunner().invoke(cli, ["serve", "--workers", "0", *args])
    assert result.exit_code == 0, result.output
    assert seen["access_log"] is logged
