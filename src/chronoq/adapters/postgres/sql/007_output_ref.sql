-- Offloaded run outputs (issue 8). A worker puts an output above output_offload_bytes to
-- the blob store (outputs/<run_id>-<attempt>) before it reports the outcome. The run then
-- keeps only the head of the output in `output` and the blob reference here. NULL: the
-- whole output is in `output`. Nullable with no default: adding it rewrites nothing.
ALTER TABLE job_runs ADD COLUMN output_ref text;
