-- 012_stream_shard.sql -- the stream shard of a row's entry (issue 18).
-- Applied once by scripts/migrate.sh (no BEGIN/COMMIT).
--
-- An entry is (shard, ID): with LJ_STREAM_SHARDS > 1 two shards hand out
-- the same ID when both add an entry in one millisecond (IDs are per
-- stream), so stream_id alone does not name the upload a row came from.
-- The consumer stores the shard beside it; /api/trace/<id>?shard=K and
-- scripts/trace --shard K read both. NULL on the legacy path, for imports,
-- and for rows stored before this migration.
--
-- A column with no default is a catalogue change: no table rewrite, an
-- ACCESS EXCLUSIVE lock on the table and its partitions for an instant.
ALTER TABLE t_user_health_data ADD COLUMN IF NOT EXISTS stream_shard smallint;
COMMENT ON COLUMN t_user_health_data.stream_shard IS
    'Stream shard (0 .. LJ_STREAM_SHARDS - 1) of the entry stream_id names; NULL where stream_id is NULL and for rows stored before migration 012.';
