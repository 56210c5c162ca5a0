"""The transition table (model.TRANSITIONS): its shape and the promises built on it."""

from __future__ import annotations

import pytest

from jobdock.model import (
    ACTIVE,
    TERMINAL,
    TRANSITIONS,
    JobStatus,
    Outcome,
    can_transition,
    sources_of,
)

S = JobStatus


def reachable(start: JobStatus) -> set[JobStatus]:
    seen = {start}
    todo = [start]
    while todo:
        for target in TRANSITIONS[todo.pop()]:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def test_every_status_has_an_entry_and_no_self_loop() -> None:
    assert set(TRANSITIONS) == set(JobStatus)
    for status, targets in TRANSITIONS.items():
        assert status not in targets
        assert targets <= set(JobStatus)


def test_status_values_are_their_lowercase_names() -> None:
    assert [s.value for s in JobStatus] == [s.name.lower() for s in JobStatus]


def test_terminal_statuses_exit_only_by_a_manual_retry() -> None:
    assert {s for s in JobStatus if s.terminal} == TERMINAL
    for status in TERMINAL:
        assert TRANSITIONS[status] <= {S.QUEUED}
    assert TRANSITIONS[S.SUCCEEDED] == frozenset() and TRANSITIONS[S.SKIPPED] == frozenset()


def test_every_status_is_reachable_from_where_jobs_start() -> None:
    assert reachable(S.QUEUED) == set(JobStatus) - {S.SCHEDULED}
    assert S.QUEUED in TRANSITIONS[S.SCHEDULED]
    assert not sources_of(S.SCHEDULED), "scheduled is only a starting status"


def test_every_unfinished_status_can_still_end() -> None:
    for status in set(JobStatus) - TERMINAL:
        assert reachable(status) & TERMINAL, status


def test_only_a_claim_makes_a_job_active() -> None:
    assert frozenset({S.RUNNING, S.CANCELING}) == ACTIVE
    assert sources_of(S.RUNNING) == {S.QUEUED}
    assert sources_of(S.CANCELING) == {S.RUNNING}


def test_can_transition_and_sources_of_agree_with_the_table() -> None:
    for current in JobStatus:
        for wanted in JobStatus:
            assert can_transition(current, wanted) == (wanted in TRANSITIONS[current])
            assert (current in sources_of(wanted)) == can_transition(current, wanted)


# What each way an attempt can end does to a running job and to one asked to cancel
# (store.job_complete_many); every such change must be in the table.
OUTCOME_TARGETS = {
    Outcome.SUCCEEDED: (S.SUCCEEDED, S.SUCCEEDED),
    Outcome.FAILED: (S.FAILED, S.FAILED),
    Outcome.CANCELED: (S.CANCELED, S.CANCELED),
    Outcome.RETRY: (S.QUEUED, S.CANCELED),
    Outcome.RELEASED: (S.QUEUED, S.CANCELED),
}


@pytest.mark.parametrize("outcome", list(Outcome))
def test_every_outcome_is_an_allowed_transition(outcome: Outcome) -> None:
    from_running, from_canceling = OUTCOME_TARGETS[outcome]
    assert can_transition(S.RUNNING, from_running)
    assert can_transition(S.CANCELING, from_canceling)


def test_the_shared_empty_mapping_refuses_every_change_and_copies_as_a_dict() -> None:
    import copy
    import json
    import pickle

    from jobdock.model import EMPTY

    changes = [lambda m: m.__setitem__("a", 1), lambda m: m.__delitem__("a"),
               lambda m: m.clear(), lambda m: m.pop("a", None), lambda m: m.popitem(),
               lambda m: m.setdefault("a", 1), lambda m: m.update(a=1)]
    for change in changes:
        with pytest.raises(TypeError):
            change(EMPTY)
    with pytest.raises(TypeError):
        shared = EMPTY
        shared |= {"a": 1}
    assert EMPTY == {} and not EMPTY
    assert dict(EMPTY) == {} and type(dict(EMPTY)) is dict
    assert {**EMPTY, "a": 1} == {"a": 1}
    assert json.dumps(EMPTY) == "{}"
    assert copy.deepcopy(EMPTY) == {} and pickle.loads(pickle.dumps(EMPTY)) == {}
