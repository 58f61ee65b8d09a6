-- Bounded reads of run output (issue 7.4). job_runs.output keeps only the head of each
-- output, its first 2,049 characters (LIST_OUTPUT_CHARS + 1, enough to tell a list that it
-- was cut). An output longer than that is kept whole in run_outputs. A list of runs then
-- never reads overflow pages of 1 MiB outputs into the page cache, and job_runs stays
-- compact for the claim and reaper scans. JobStore.read_output reads run_outputs first.
CREATE TABLE run_outputs (
    run_id TEXT PRIMARY KEY REFERENCES job_runs (run_id) ON DELETE CASCADE,
    output TEXT NOT NULL
);
INSERT INTO run_outputs (run_id, output)
    SELECT run_id, output FROM job_runs WHERE length(output) > 2049;
UPDATE job_runs SET output = substr(output, 1, 2049) WHERE length(output) > 2049;
