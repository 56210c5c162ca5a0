"""Job ids: 24 lowercase hex characters, time-sortable, unique across threads and forks."""

from __future__ import annotations

import os
import threading
import warnings

import pytest

from jobdock import ids
from jobdock.ids import id_time, is_id, new_id, new_ids

NOW = 1_800_000_000.0


def test_format() -> None:
    job_id = new_id()
    assert len(job_id) == 24 and job_id == job_id.lower()
    assert is_id(job_id)
    int(job_id, 16)


@pytest.mark.parametrize("value", ["", "0" * 23, "0" * 25, "A" * 24, "g" * 24, " " + "0" * 23])
def test_is_id_refuses_other_shapes(value: str) -> None:
    assert not is_id(value)


def test_the_time_part_is_the_unix_second() -> None:
    assert id_time(new_id(NOW + 0.9)) == int(NOW)
    assert all(id_time(i) == int(NOW) for i in new_ids(3, NOW))


def test_ids_sort_by_second_then_by_creation() -> None:
    made = [new_id(NOW), new_id(NOW), *new_ids(50, NOW), new_id(NOW + 1), new_id(NOW - 1)]
    assert made[:-1] == sorted(made[:-1])
    assert min(made) == made[-1], "an id of an earlier second sorts first"


def test_bulk_ids_are_distinct_and_increasing() -> None:
    batch = new_ids(1000, NOW)
    assert batch == sorted(set(batch))
    assert new_ids(0) == []


def test_unique_across_threads() -> None:
    made: list[list[str]] = [[] for _ in range(8)]

    def make(out: list[str]) -> None:
        for _ in range(2000):
            out.append(new_id(NOW))
        out.extend(new_ids(500, NOW))

    threads = [threading.Thread(target=make, args=(out,)) for out in made]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [i for out in made for i in out]
    assert len(set(everything)) == len(everything) == 8 * 2500
    for out in made:
        assert out[:2000] == sorted(out[:2000]), "one thread's ids increase"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_unique_after_fork() -> None:
    parent_before = new_ids(100, NOW)
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        # Python warns about forking a process that runs threads; this child
        # only makes ids and exits.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.write(write_end, " ".join(new_ids(100, NOW)).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        child = pipe.read().split()
    os.waitpid(pid, 0)
    parent_after = new_ids(100, NOW)
    assert len(child) == 100
    assert not set(child) & (set(parent_before) | set(parent_after))
    assert {c[8:18] for c in child} != {p[8:18] for p in parent_after}, "new process bytes"


def test_ids_keep_increasing_when_a_second_runs_out_of_counter_values(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ids, "_second", int(NOW))
    monkeypatch.setattr(ids, "_count", (1 << 24) - 1)
    batch = new_ids(3, NOW)
    assert batch == sorted(batch) and len(set(batch)) == 3
    assert id_time(batch[-1]) == int(NOW) + 1


def test_ids_do_not_go_back_with_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    first = new_id()
    monkeypatch.setattr(ids.time, "time", lambda: NOW - 10 ** 6)
    assert new_id() > first
