-- Buffered ingestion (--ingest log): the api appends here and answers 201; the writer
-- role moves rows into jobs in batches, deleting them in the same transaction.
CREATE TABLE submissions (
    seq          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id       uuid        NOT NULL UNIQUE,
    user_id      text        NOT NULL,
    body         bytea       NOT NULL,          -- the Job, msgspec JSON
    submitted_at timestamptz NOT NULL DEFAULT now()
);
