"""The run state machine as data: the transition table, the outcome rules, a walk property."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chronoq.domain.states import (
    JOB_TERMINAL,
    RUN_TERMINAL,
    RUN_TRANSITIONS,
    InvalidTransition,
    JobStatus,
    RunStatus,
    can_transition,
    job_status_after_run,
    outcome_status,
    transition,
)

R = RunStatus

# The table as the design draws it (docs/state_machine.md); written out again on purpose,
# so that a change to RUN_TRANSITIONS is a deliberate change to this test too.
EXPECTED: dict[RunStatus, set[RunStatus]] = {
    R.QUEUED: {R.RUNNING, R.CANCELLED, R.SKIPPED},
    R.RUNNING: {
        R.COMPLETED,
        R.FAILED,
        R.TIMED_OUT,
        R.CANCELLED,
        R.RETRY_SCHEDULED,
        R.INTERRUPTED,
        R.DEAD,
        R.QUEUED,
        R.SKIPPED,
    },
    R.COMPLETED: set(),
    R.FAILED: set(),
    R.TIMED_OUT: set(),
    R.CANCELLED: set(),
    R.RETRY_SCHEDULED: set(),
    R.INTERRUPTED: set(),
    R.DEAD: set(),
    R.SKIPPED: set(),
}

ALLOWED = [(old, new) for old, news in EXPECTED.items() for new in sorted(news)]
REFUSED = [
    (old, new) for old, new in itertools.product(RunStatus, RunStatus) if new not in EXPECTED[old]
]
NO_EXIT = frozenset(s for s, exits in EXPECTED.items() if not exits)


def test_table_is_exactly_the_designed_one() -> None:
    assert set(RUN_TRANSITIONS) == set(RunStatus)
    assert {old: set(news) for old, news in RUN_TRANSITIONS.items()} == EXPECTED
    for news in RUN_TRANSITIONS.values():
        assert isinstance(news, frozenset)


def test_every_pair_is_either_allowed_or_refused() -> None:
    assert len(ALLOWED) + len(REFUSED) == len(RunStatus) ** 2


@pytest.mark.parametrize(("old", "new"), ALLOWED, ids=[f"{o}->{n}" for o, n in ALLOWED])
def test_allowed_moves_apply(old: RunStatus, new: RunStatus) -> None:
    assert can_transition(old, new)
    assert transition(old, new) is new


@pytest.mark.parametrize(("old", "new"), REFUSED, ids=[f"{o}->{n}" for o, n in REFUSED])
def test_other_moves_are_refused(old: RunStatus, new: RunStatus) -> None:
    assert not can_transition(old, new)
    with pytest.raises(InvalidTransition, match=f"from {old} to {new}"):
        transition(old, new)


def test_invalid_transition_is_a_value_error() -> None:
    assert issubclass(InvalidTransition, ValueError)


def test_no_state_moves_to_itself() -> None:
    for state in RunStatus:
        assert not can_transition(state, state)


@pytest.mark.parametrize("state", sorted(RUN_TERMINAL))
def test_terminal_states_have_no_exits(state: RunStatus) -> None:
    assert RUN_TRANSITIONS[state] == frozenset()
    for new in RunStatus:
        with pytest.raises(InvalidTransition):
            transition(state, new)


def test_terminal_sets() -> None:
    assert set(RUN_TERMINAL) == {R.COMPLETED, R.FAILED, R.TIMED_OUT, R.CANCELLED, R.DEAD, R.SKIPPED}
    # RETRY_SCHEDULED and INTERRUPTED end an attempt, not a fire: no exits, not terminal.
    assert R.RETRY_SCHEDULED not in RUN_TERMINAL
    assert R.INTERRUPTED not in RUN_TERMINAL
    assert set(NO_EXIT) == RUN_TERMINAL | {R.RETRY_SCHEDULED, R.INTERRUPTED}
    assert set(JOB_TERMINAL) == {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED}


def test_every_state_is_reachable_from_queued() -> None:
    seen = {R.QUEUED}
    frontier = [R.QUEUED]
    while frontier:
        for new in RUN_TRANSITIONS[frontier.pop()]:
            if new not in seen:
                seen.add(new)
                frontier.append(new)
    assert seen == set(RunStatus)


def test_statuses_are_their_names() -> None:
    for status in [*RunStatus, *JobStatus]:
        assert status.value == status.name
        assert status.__doc__, f"{status!r} has no docstring saying who moves it"


# -- the walk property ------------------------------------------------------------------------


@settings(max_examples=300)
@given(data=st.data(), start=st.sampled_from(list(RunStatus)))
def test_random_walks_stop_only_where_there_is_no_exit(
    data: st.DataObject, start: RunStatus
) -> None:
    """Following the table only: a walk either keeps moving or rests in a no-exit state
    (a terminal one, or RETRY_SCHEDULED whose attempt is over); from there nothing moves."""
    state = start
    for _ in range(50):
        exits = RUN_TRANSITIONS[state]
        if not exits:
            break
        new = data.draw(st.sampled_from(sorted(exits)))
        assert transition(state, new) is new
        state = new
    else:
        assert state in {R.QUEUED, R.RUNNING}  # still moving (the hand-back loop)
        return
    assert state in RUN_TERMINAL or state in (R.RETRY_SCHEDULED, R.INTERRUPTED)
    stray = data.draw(st.sampled_from(list(RunStatus)))
    with pytest.raises(InvalidTransition):
        transition(state, stray)
    assert state in NO_EXIT


# -- outcome_status ---------------------------------------------------------------------------

OUTCOMES = [
    # succeeded, timed_out, attempts_left -> status
    (True, False, False, R.COMPLETED),
    (True, False, True, R.COMPLETED),
    (True, True, False, R.COMPLETED),
    (True, True, True, R.COMPLETED),
    (False, False, True, R.RETRY_SCHEDULED),
    (False, True, True, R.RETRY_SCHEDULED),
    (False, False, False, R.FAILED),
    (False, True, False, R.TIMED_OUT),
]


@pytest.mark.parametrize(("succeeded", "timed_out", "attempts_left", "expected"), OUTCOMES)
def test_outcome_status_truth_table(
    succeeded: bool, timed_out: bool, attempts_left: bool, expected: RunStatus
) -> None:
    got = outcome_status(succeeded=succeeded, timed_out=timed_out, attempts_left=attempts_left)
    assert got is expected
    assert can_transition(R.RUNNING, got), "an outcome must be a legal move out of RUNNING"


def test_outcome_table_covers_every_combination() -> None:
    assert {o[:3] for o in OUTCOMES} == set(itertools.product([True, False], repeat=3))


# -- job_status_after_run ---------------------------------------------------------------------

ONE_SHOT = [
    (R.COMPLETED, JobStatus.COMPLETED),
    (R.FAILED, JobStatus.FAILED),
    (R.TIMED_OUT, JobStatus.FAILED),
    (R.DEAD, JobStatus.FAILED),
    (R.CANCELLED, JobStatus.CANCELLED),
    (R.RETRY_SCHEDULED, JobStatus.PENDING),
    (R.INTERRUPTED, JobStatus.PENDING),
    # A one-shot job whose only fire was skipped (deadline, misfire skip) did not do its
    # work: FAILED, with the reason in its fire ledger.
    (R.SKIPPED, JobStatus.FAILED),
]


@pytest.mark.parametrize(("run_status", "expected"), ONE_SHOT)
def test_job_status_after_run_one_shot(run_status: RunStatus, expected: JobStatus) -> None:
    assert job_status_after_run(run_status, recurring=False) is expected


@pytest.mark.parametrize(
    "run_status",
    [
        R.COMPLETED, R.FAILED, R.TIMED_OUT, R.DEAD, R.RETRY_SCHEDULED, R.INTERRUPTED, R.SKIPPED,
        R.CANCELLED,
    ],
)  # fmt: skip
def test_job_status_after_run_recurring_keeps_the_schedule(run_status: RunStatus) -> None:
    """A recurring job goes on after any outcome of one fire, a poison (DEAD) one included."""
    assert job_status_after_run(run_status, recurring=True) is JobStatus.PENDING


def test_a_recurring_run_cancelled_by_the_next_fire_leaves_the_job_going() -> None:
    """Overlap ``cancel_previous`` ends the running run CANCELLED; the job goes on. (A run
    cancelled because its job was finds the job CANCELLED already, and terminal jobs stay.)"""
    assert job_status_after_run(R.CANCELLED, recurring=True) is JobStatus.PENDING
