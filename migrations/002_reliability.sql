-- 002_reliability.sql -- stream entries are identified by (stream, ID), and
-- dead letters are kept in the database (issue 15).

-- An entry ID is unique only within its stream: two prefixes on one database,
-- or two shards, can hand out the same ID. Rows written before this migration
-- have no stream (NULL) and stay as they are.
ALTER TABLE t_device_info_history ADD COLUMN stream varchar(128);
ALTER TABLE t_device_info_history DROP CONSTRAINT t_device_info_history_stream_id_key;
ALTER TABLE t_device_info_history
    ADD CONSTRAINT t_device_info_history_stream_entry_key UNIQUE (stream, stream_id);
COMMENT ON COLUMN t_device_info_history.stream IS
    'Redis stream (key name, with its prefix) the report came from; NULL before migration 002.';
COMMENT ON COLUMN t_device_info_history.stream_id IS
    'Redis stream entry ID of the report; unique with its stream, so a redelivered entry adds nothing.';

-- Dead letters: every entry a consumer gave up on, kept for good. The Redis
-- copy (<stream>:dead) is trimmed to a bound; this table is not.
CREATE TABLE t_dead_letter (
    id          bigserial PRIMARY KEY,
    stream      varchar(128) NOT NULL,
    entry_id    varchar(64) NOT NULL,
    reason      text NOT NULL,
    attempts    integer NOT NULL DEFAULT 0,
    consumer    varchar(160),
    fields      jsonb NOT NULL,
    dead_time   timestamptz NOT NULL DEFAULT now(),
    replayed_at timestamptz,
    UNIQUE (stream, entry_id)
);
CREATE INDEX t_dead_letter_time_idx ON t_dead_letter (dead_time);
COMMENT ON TABLE t_dead_letter IS
    'Stream entries moved to the dead letters, with why; the Redis <stream>:dead copy is trimmed, this is not.';
COMMENT ON COLUMN t_dead_letter.attempts IS 'Attempts that crashed a worker on this entry (outages never count).';
COMMENT ON COLUMN t_dead_letter.fields IS
    'The original entry''s fields; a value that is not UTF-8 is kept as {"hex": "..."}.';
COMMENT ON COLUMN t_dead_letter.replayed_at IS 'Set by scripts/dlq replay.';
