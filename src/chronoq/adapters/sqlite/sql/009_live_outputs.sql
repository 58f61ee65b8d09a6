-- Live output of running runs (issue 10.3). A worker publishes the newest window of each
-- running run's output (at most 256 KiB, LIVE_OUTPUT_BYTES) about once a second, compare-
-- and-set on (RUNNING, lease owner, attempt), and readers stream it. start_offset is the byte
-- offset of the window's first byte in the attempt's whole output, end_offset the offset
-- after its last (readers that have it all read no text). The row goes when the
-- run leaves RUNNING (complete_runs, reap_lost and release_runs delete it) or is deleted (cascade). The final output is
-- job_runs.output as before.
CREATE TABLE live_outputs (
    run_id TEXT PRIMARY KEY REFERENCES job_runs (run_id) ON DELETE CASCADE,
    attempt INTEGER NOT NULL,
    start_offset INTEGER NOT NULL,
    end_offset INTEGER NOT NULL,
    output TEXT NOT NULL
);
