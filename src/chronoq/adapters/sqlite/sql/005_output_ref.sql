-- Offloaded run outputs (issue 8). A worker puts an output above output_offload_bytes to
-- the blob store (outputs/<run_id>-<attempt>) before it reports the outcome. The run then
-- keeps only the head of the output inline (job_runs.output, as migration 003 does for
-- long ones) and the blob reference here. NULL = the output is inline (and run_outputs).
ALTER TABLE job_runs ADD COLUMN output_ref TEXT;
