"""Key checks, Content-Disposition and the blob settings."""

from __future__ import annotations

import pytest

from jobdock.blobs import blob_key, check_key, content_disposition, open_blobs
from jobdock.config import Settings
from jobdock.errors import InvalidInput


@pytest.mark.parametrize(
    "key",
    ["t/0123456789abcdef01234567/artifacts/out.csv", "t", "t/j/uploads/My File 1.tar.gz"],
)
def test_good_keys_pass(key: str) -> None:
    assert check_key(key) == key


@pytest.mark.parametrize(
    "key",
    ["", "/t", "t/", "t//x", "t/./x", "t/../x", "t/x..y", "t/-x", "t/x\n", "t/x\x00",
     "t/" + "x" * 900],
)
def test_bad_keys_fail(key: str) -> None:
    with pytest.raises(InvalidInput):
        check_key(key)


def test_blob_key_refuses_a_trailing_newline() -> None:
    with pytest.raises(InvalidInput):
        blob_key("t", "job", "artifacts", "out.csv\n")


@pytest.mark.parametrize(
    ("filename", "header"),
    [
        ("report.csv", 'attachment; filename="report.csv"'),
        ('a"b\\c.txt', "attachment; filename=\"a_b_c.txt\"; filename*=UTF-8''a%22b%5Cc.txt"),
        ("März.csv", "attachment; filename=\"M_rz.csv\"; filename*=UTF-8''M%C3%A4rz.csv"),
        ("x\r\nSet-Cookie: a=b", "attachment; filename=\"x__Set-Cookie: a=b\";"
         " filename*=UTF-8''x%0D%0ASet-Cookie%3A%20a%3Db"),
        ("", 'attachment; filename="download"; filename*=UTF-8\'\''),
    ],
)
def test_content_disposition(filename: str, header: str) -> None:
    assert content_disposition(filename) == header
    assert "\r" not in header and "\n" not in header


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBDOCK_S3_ENDPOINT_URL", "http://127.0.0.1:9000")
    monkeypatch.setenv("JOBDOCK_S3_ADDRESSING_STYLE", "path")

    settings = Settings()

    assert settings.s3_endpoint_url == "http://127.0.0.1:9000"
    assert settings.s3_addressing_style == "path"


def test_unknown_blob_url_scheme() -> None:
    with pytest.raises(ValueError, match="s3://"):
        open_blobs("ftp://host/dir")
