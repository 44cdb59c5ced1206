-- 011_lean_indexes.sql -- two B-trees every insert paid for, replaced by
-- what their queries need (issue 20; measured in docs/benchmarks.md,
-- "Consumer levers"). Applied once by scripts/migrate.sh (no BEGIN/COMMIT).
--
-- stream_id: looked up one value at a time (/api/trace, scripts/trace).
-- Within a partition rows are appended in the order their entries were
-- read, and stream IDs grow with time, so a BRIN (a few bytes per 128
-- pages) finds the pages of one ID; the B-tree cost a text comparison
-- descent per row.
--
-- (upload_method, create_time): its one query (rows by path in a window,
-- scripts/consistency) filters on create_time, which the BRIN of migration
-- 004 serves; upload_method alone has three values.
--
-- On a large table the BRIN build takes a SHARE lock on each partition for
-- a short scan (inserts wait); the DROPs take an ACCESS EXCLUSIVE lock for
-- an instant. docs/operations.md, "Report indexes on a large table".
CREATE INDEX IF NOT EXISTS t_user_health_data_stream_id_brin
    ON t_user_health_data USING brin (stream_id);
DROP INDEX IF EXISTS t_user_health_data_stream_id_idx;
DROP INDEX IF EXISTS t_user_health_data_upload_method_idx;
