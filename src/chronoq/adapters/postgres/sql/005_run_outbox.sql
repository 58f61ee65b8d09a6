-- The run table is the outbox of an external run queue (--dispatch redis:// | sqs://).
--
-- published_at: when a message naming this QUEUED run was last sent (NULL: never since
-- the run last entered QUEUED). The relay (chronoq.adapters.queue) sends every QUEUED
-- run with published_at NULL, so a process dying between a store commit and the send
-- loses nothing; it sends again runs published long ago and still QUEUED (a broker
-- that lost its messages). Without --dispatch the column stays NULL and unread.
ALTER TABLE job_runs ADD COLUMN published_at timestamptz;

-- The relay's every-half-second question, "which QUEUED runs were never sent", must not
-- cost a scan of every QUEUED run while workers are saturated (all of those were sent).
CREATE INDEX runs_unpublished ON job_runs (available_at)
    WHERE status = 'QUEUED' AND published_at IS NULL;

-- Entering QUEUED again (reap_lost / release_runs requeue an unstarted run under the
-- same run id) means the earlier message is spent: clear published_at here, once, so
-- every path that requeues a run (today's and future ones) makes it unpublished.
-- New rows start NULL by default.
CREATE FUNCTION chronoq_run_unpublished() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.published_at := NULL;
    RETURN NEW;
END
$$;

CREATE TRIGGER job_runs_requeued_unpublished
    BEFORE UPDATE OF status ON job_runs
    FOR EACH ROW
    WHEN (NEW.status = 'QUEUED' AND OLD.status IS DISTINCT FROM 'QUEUED')
    EXECUTE FUNCTION chronoq_run_unpublished();
