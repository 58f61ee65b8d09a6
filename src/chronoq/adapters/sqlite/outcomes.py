"""The outcomes of ``SqliteStore``: ``complete_runs``, the hot path's last write.

An outcome is recorded only while its run is still RUNNING under the reporting worker
and attempt (compare-and-set). Most outcomes of a batch end their runs in ONE statement
(``UPDATE ... FROM (VALUES ...) ... RETURNING``, 500 runs a statement): a statement per
run cost twice as much per run, measured (12 against 6 µs), and completions are a
quarter of the worker's work. A retry (RETRY_SCHEDULED: it also creates the next
attempt, unless the job was cancelled) is recorded on its own, as before.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from chronoq.adapters.sqlite.dispatch import INSERT_RUN
from chronoq.adapters.sqlite.settle import EndedAt, settle_each
from chronoq.domain.clock import to_micros
from chronoq.domain.ids import new_id
from chronoq.domain.jobs import LIST_OUTPUT_CHARS, RunOutcome
from chronoq.domain.states import JobStatus, RunStatus

_END_BY_OUTCOME = (
    "UPDATE job_runs SET status = ?, started_at = ?, completed_at = ?, output = ?,"
    " exit_code = ?, error_message = ?, lease_owner = NULL, lease_until = NULL, output_ref = ?"
    " WHERE run_id = ? AND status = 'RUNNING' AND lease_owner = ? AND attempt = ?"
    " RETURNING job_id, user_id, scheduled_for, interruptions, manual"
)


OUTPUT_HEAD_CHARS = LIST_OUTPUT_CHARS + 1
"""Characters of an output kept in ``job_runs`` (migration 003); a longer output is kept
whole in ``run_outputs`` as well, so lists never read it."""
_KEEP_WHOLE_OUTPUT = "INSERT OR REPLACE INTO run_outputs (run_id, output) VALUES (?, ?)"


_END_MANY = (
    "WITH v(status, started_at, completed_at, output, exit_code, error_message, output_ref,"
    " run_id, owner, attempt) AS (VALUES {rows})"
    " UPDATE job_runs SET status = v.status, started_at = v.started_at,"
    " completed_at = v.completed_at, output = v.output, exit_code = v.exit_code,"
    " error_message = v.error_message, lease_owner = NULL, lease_until = NULL,"
    " output_ref = v.output_ref"
    " FROM v WHERE job_runs.run_id = v.run_id AND job_runs.status = 'RUNNING'"
    " AND job_runs.lease_owner = v.owner AND job_runs.attempt = v.attempt"
    " RETURNING job_runs.run_id, job_runs.job_id"
)
_ROW = "(" + ",".join("?" * 10) + ")"
_MANY_CHUNK = 500
"""Runs per ``_END_MANY`` (10 parameters each: well under SQLite's 32,766)."""


def complete_runs(conn: sqlite3.Connection, outcomes: Sequence[RunOutcome]) -> list[bool]:
    """Record each outcome whose run is still RUNNING under (worker, attempt), in order;
    whether it was. Once one outcome of a run is recorded, the batch's later ones for it
    are stale. The jobs of the ended runs are settled together, after the runs, in the
    batch's order (no outcome's write reads what a settle changes).

    In rounds: each takes the first outcome left of each run; a run's next outcome
    waits for a round after (a batch rarely holds two outcomes of one run)."""
    ended: list[EndedAt | None] = [None] * len(outcomes)
    pending = list(range(len(outcomes)))
    while pending:
        first: dict[str, int] = {}
        later: list[int] = []
        for index in pending:
            run_id = outcomes[index].run_id
            if run_id in first:
                later.append(index)
            else:
                first[run_id] = index
        plain: list[int] = []
        for index in first.values():
            if outcomes[index].status is RunStatus.RETRY_SCHEDULED:
                ended[index] = complete_run(conn, outcomes[index])
            else:
                plain.append(index)
        for start in range(0, len(plain), _MANY_CHUNK):
            chunk = plain[start : start + _MANY_CHUNK]
            for index, job_id in _end_many(conn, [outcomes[i] for i in chunk], chunk):
                done = outcomes[index]
                ended[index] = (job_id, done.run_id, done.status, to_micros(done.completed_at))
        recorded = {outcomes[i].run_id for i in first.values() if ended[i] is not None}
        pending = [i for i in later if outcomes[i].run_id not in recorded]
    settle_each(conn, [e for e in ended if e is not None])
    return [e is not None for e in ended]


def _end_many(
    conn: sqlite3.Connection, batch: Sequence[RunOutcome], indexes: Sequence[int]
) -> list[tuple[int, str]]:
    """End the runs of ``batch`` (no retries, one outcome per run) that are still RUNNING
    under their outcome's worker and attempt: (index, job_id) of each one ended."""
    args: list[object] = []
    at: dict[str, int] = {}
    for outcome, index in zip(batch, indexes, strict=True):
        at[outcome.run_id] = index
        output = outcome.output
        args += [
            outcome.status.value, to_micros(outcome.started_at),
            to_micros(outcome.completed_at),
            None if output is None else output[:OUTPUT_HEAD_CHARS],
            outcome.exit_code, outcome.error_message, outcome.output_ref,
            outcome.run_id, outcome.worker_id, outcome.attempt,
        ]  # fmt: skip
    sql = _END_MANY.format(rows=",".join([_ROW] * len(batch)))
    ended = [(at[run_id], job_id) for run_id, job_id in conn.execute(sql, args).fetchall()]
    whole = [(o.run_id, o.output) for o in batch if o.output and len(o.output) > OUTPUT_HEAD_CHARS]
    if whole:
        applied = {batch_index for batch_index, _ in ended}
        conn.executemany(_KEEP_WHOLE_OUTPUT, [(r, out) for r, out in whole if at[r] in applied])
    return ended


def complete_run(conn: sqlite3.Connection, outcome: RunOutcome) -> EndedAt | None:
    """Record one outcome if the run is still RUNNING under (worker, attempt): the run to
    settle, or None (stale: nothing changed)."""
    status = outcome.status
    if status is RunStatus.RETRY_SCHEDULED and _job_cancelled(conn, outcome.run_id):
        status = RunStatus.CANCELLED  # no retry for a cancelled job
    completed_us = to_micros(outcome.completed_at)
    output = outcome.output
    row = conn.execute(
        _END_BY_OUTCOME,
        (
            status.value,
            to_micros(outcome.started_at),
            completed_us,
            None if output is None else output[:OUTPUT_HEAD_CHARS],
            outcome.exit_code,
            outcome.error_message,
            outcome.output_ref,
            outcome.run_id,
            outcome.worker_id,
            outcome.attempt,
        ),
    ).fetchone()
    if row is None:
        return None  # stale: the lease moved on; nothing changed
    if output is not None and len(output) > OUTPUT_HEAD_CHARS:
        conn.execute(_KEEP_WHOLE_OUTPUT, (outcome.run_id, output))
    job_id, user_id, scheduled_for, interruptions, manual = row
    if status is RunStatus.RETRY_SCHEDULED:
        retry_at = to_micros(outcome.retry_at or outcome.completed_at)
        conn.execute(
            INSERT_RUN,
            (
                new_id(),
                job_id,
                user_id,
                scheduled_for,
                outcome.attempt + 1,
                completed_us,
                retry_at,
                interruptions,  # a job failure: the interruptions so far carry over unchanged
                manual,
            ),
        )
    return (job_id, outcome.run_id, status, completed_us)


def _job_cancelled(conn: sqlite3.Connection, run_id: str) -> bool:
    row = conn.execute(
        "SELECT r.cancel_requested, j.status FROM job_runs r JOIN jobs j ON j.job_id = r.job_id"
        " WHERE r.run_id = ?",
        (run_id,),
    ).fetchone()
    return row is not None and (bool(row[0]) or row[1] == JobStatus.CANCELLED)
