-- 010_report_indexes.sql -- indexes for the old service's report queries
-- (issue 19), each chosen by measuring its insert cost and the query it
-- serves (tests/bench/bench_indexes.py; figures in docs/schema.md,
-- "Report indexes", and docs/benchmarks.md). Applied once by
-- scripts/migrate.sh (no BEGIN/COMMIT).
--
-- Created on the parent, so every partition, present and future, gets them.
-- On a large existing table each build takes a SHARE lock on every
-- partition (inserts wait) for its duration: PostgreSQL 15 has no CREATE
-- INDEX CONCURRENTLY on a partitioned table. docs/operations.md ("Report
-- indexes on a large table") builds them partition by partition
-- concurrently first; these statements then find them and do nothing.
--
-- Not added: create_time (rows created in a day) is served by the BRIN of
-- migration 004 and (upload_method, create_time) of 001; time ranges by ts
-- (ts) and by user (user_id, ts) have theirs since 001.

-- A customer's (tenant's) readings over a time range: without it the ts
-- index reads every customer's rows of the range.
CREATE INDEX IF NOT EXISTS t_user_health_data_customer_ts_idx
    ON t_user_health_data (customer_id, ts);

-- An organisation's readings over a time range, likewise.
CREATE INDEX IF NOT EXISTS t_user_health_data_org_ts_idx
    ON t_user_health_data (org_id, ts);

-- One upload batch: no time bound, so without it every partition is read
-- in full. Partial: rows stored without a batchId cost nothing.
CREATE INDEX IF NOT EXISTS t_user_health_data_batch_id_idx
    ON t_user_health_data (batch_id) WHERE batch_id IS NOT NULL;
