-- Live output of running runs (issue 10.3). A worker publishes the newest window of each
-- running run's output (at most 256 KiB, LIVE_OUTPUT_BYTES) about once a second, compare-
-- and-set on (RUNNING, lease owner, attempt), and readers stream it. start_offset is the byte
-- offset of the window's first byte in the attempt's whole output, end_offset the offset
-- after its last (readers that have it all read no text). The row goes in the
-- statement that moves the run out of RUNNING (sql.COMPLETE, sql.END_LOST) or with the run
-- (cascade). The final output is job_runs.output as before. Rows are rewritten every
-- second while a run prints: a small, hot table, kept apart from job_runs.
CREATE TABLE live_outputs (
    run_id uuid PRIMARY KEY REFERENCES job_runs (run_id) ON DELETE CASCADE,
    attempt integer NOT NULL,
    start_offset bigint NOT NULL,
    end_offset bigint NOT NULL,
    output text NOT NULL
);
