"""fast_loads: the JSON columns' reader, with pydantic-core and without it (a worker)."""

from __future__ import annotations

import json
import sys

import pytest

from jobdock.store.json_columns import fast_loads

TEXTS = ['{"i": 12345}', "{}", "[]", "null", "true", '"\\u00e9\\ud83d\\ude00"', "1e400",
         "-0.0", "12345678901234567890123", ' {"a": [1, 2.5, null]} ', '"\\ud800"',
         '{"a": 1, "a": 2}', "NaN"]
BAD = ["", " ", '{"a": 1} x', '{"a": ', "nope"]


@pytest.fixture(params=["pydantic-core", "json scanner"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "json scanner":
        monkeypatch.delitem(sys.modules, "pydantic_core", raising=False)
    else:
        import pydantic_core  # noqa: F401 - loaded, as in the API
    return str(request.param)


@pytest.mark.parametrize("text", TEXTS)
def test_reads_what_json_loads_reads(parser: str, text: str) -> None:
    expected = json.loads(text)
    got = fast_loads(text)
    if isinstance(expected, float) and expected != expected:
        assert got != got  # NaN
    else:
        assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize("text", BAD)
def test_refuses_what_json_loads_refuses(parser: str, text: str) -> None:
    with pytest.raises(ValueError):
        fast_loads(text)


def test_none_is_none(parser: str) -> None:
    assert fast_loads(None) is None
