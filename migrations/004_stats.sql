-- 004_stats.sql -- /api/stats counts rows created today (issue 16: the old
-- service's today_records, active_devices, active_users), i.e. a range on
-- create_time, which no index served: the table is partitioned by the
-- reading time (ts), so the count read every partition in full (2M rows:
-- 0.8 s, growing with the table).
--
-- BRIN, not btree: create_time is the transaction time, so rows lie on disk
-- in create_time order within each partition and a BRIN summary of each
-- 128-page range finds today's pages (2M rows: 0.8 s -> 43 ms, the rest being
-- the DISTINCT counts of today's rows), at almost no cost per insert (a
-- btree would add one more index to every COPY). Created on the parent, so
-- every partition, present and future, gets it. On a large existing table
-- this takes a SHARE lock (inserts wait) while it builds: PostgreSQL 15 has
-- no CREATE INDEX CONCURRENTLY on a partitioned table (docs/operations.md).
CREATE INDEX IF NOT EXISTS t_user_health_data_create_time_brin
    ON t_user_health_data USING brin (create_time);

-- alerts_today counts t_alert_info the same way.
CREATE INDEX IF NOT EXISTS t_alert_info_create_time_brin
    ON t_alert_info USING brin (create_time);
