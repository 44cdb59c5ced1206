-- 008_retention.sql -- data that ages (issue 19): monthly partitions of
-- t_user_health_data older than the retention are archived (optionally),
-- detached and dropped by the consumer's upkeep, each drop audited.
-- Applied once by scripts/migrate.sh (no BEGIN/COMMIT).
--
-- The ingest role gets EXECUTE on the functions below and nothing more: it
-- cannot DROP a table itself. drop_health_partition() is SECURITY DEFINER
-- (owned by the migration owner, who owns the partitions) and drops only
-- what health_retention_candidates() names: a monthly partition of ours
-- (t_user_health_data_YYYYMM), never the default one, whose whole range
-- ends before the first day of the UTC month 'keep_months' before the
-- current one. The consumer refuses a retention shorter than its partition
-- window (config.c), so nothing inside the window the upload paths write to
-- is asked for; the server's own floor is one month (the current and the
-- last month are never dropped, whatever the caller says).

CREATE TABLE IF NOT EXISTS t_partition_retention_audit (
    id             bigserial PRIMARY KEY,
    partition_name varchar(63) NOT NULL,
    range_from     timestamptz NOT NULL,
    range_to       timestamptz NOT NULL,
    row_count      bigint NOT NULL,
    keep_months    integer NOT NULL,
    archive_file   text,
    archive_sha256 char(64),
    archive_bytes  bigint,
    dropped_by     varchar(128) NOT NULL DEFAULT session_user,
    application    varchar(128) NOT NULL DEFAULT current_setting('application_name'),
    dropped_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT t_partition_retention_audit_archive_check
        CHECK ((archive_file IS NULL) = (archive_sha256 IS NULL)
               AND (archive_file IS NULL) = (archive_bytes IS NULL))
);
COMMENT ON TABLE t_partition_retention_audit IS
    'One row per health partition dropped by retention (--retention-months): which, its range, how many rows it held, and the archive written before the drop (file, SHA-256, size), if any.';
COMMENT ON COLUMN t_partition_retention_audit.archive_file IS
    'Path of the COPY text file the consumer wrote (on the consumer''s machine) before the drop; NULL when not archived.';
COMMENT ON COLUMN t_partition_retention_audit.archive_sha256 IS
    'SHA-256 of archive_file, as sha256sum prints it.';
COMMENT ON COLUMN t_partition_retention_audit.dropped_by IS 'Role that called drop_health_partition().';
COMMENT ON COLUMN t_partition_retention_audit.application IS 'Its application_name (ljwx-consumer).';

-- The partitions retention may drop for 'keep_months' at time 'as_of' (now;
-- another time only to see what a later run would drop: the lock and drop
-- functions always use now), oldest first. Reads only the catalog; the
-- bounds are parsed under TimeZone UTC (how ensure_health_months() wrote
-- them). A partition with another name or bound shape (made by hand,
-- MINVALUE/MAXVALUE) is never listed.
CREATE OR REPLACE FUNCTION health_retention_candidates(keep_months integer,
                                                       as_of timestamptz DEFAULT now())
RETURNS TABLE (part text, range_from timestamptz, range_to timestamptz)
LANGUAGE plpgsql
STABLE
SET TimeZone = 'UTC'
SET DateStyle = 'ISO, YMD'
AS $$
DECLARE
    cutoff timestamptz;
BEGIN
    IF keep_months IS NULL OR keep_months < 1 OR keep_months > 1200 OR as_of IS NULL THEN
        RAISE EXCEPTION 'health_retention_candidates: keep_months must be 1..1200, not %',
            keep_months USING ERRCODE = 'invalid_parameter_value';
    END IF;
    cutoff := (date_trunc('month', as_of AT TIME ZONE 'UTC')
               - make_interval(months => keep_months)) AT TIME ZONE 'UTC';
    RETURN QUERY
    SELECT b.relname::text, b.bounds[1]::timestamptz, b.bounds[2]::timestamptz
      FROM (SELECT c.relname,
                   regexp_match(pg_get_expr(c.relpartbound, c.oid),
                                '^FOR VALUES FROM \(''([^'']+)''\) TO \(''([^'']+)''\)$') AS bounds
              FROM pg_inherits i
              JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 't_user_health_data'::regclass
               AND c.relname ~ '^t_user_health_data_[0-9]{6}$') b
     WHERE b.bounds IS NOT NULL
       AND b.bounds[2]::timestamptz <= cutoff
     ORDER BY 2;
END
$$;
COMMENT ON FUNCTION health_retention_candidates(integer, timestamptz) IS
    'Monthly partitions t_user_health_data_YYYYMM (never the default) whose whole range ends on or before the first day of the UTC month keep_months (1..1200) before the month of as_of (default now): what retention may drop. Oldest first.';

-- Locks partition 'part' against writes (SHARE: readers go on) for the
-- caller's transaction, after checking it is a candidate: taken before the
-- archive's COPY, so no row can reach the partition between the archive and
-- the drop. Returns the partition's range, as UTC text for the COPY.
CREATE OR REPLACE FUNCTION lock_health_partition(part text, keep_months integer,
                                                 OUT range_from text, OUT range_to text)
LANGUAGE plpgsql
SECURITY DEFINER
SET lock_timeout = '5s'
SET TimeZone = 'UTC'
SET DateStyle = 'ISO, YMD'
AS $$
DECLARE
    lo timestamptz;
    hi timestamptz;
BEGIN
    SELECT c.range_from, c.range_to INTO lo, hi
      FROM health_retention_candidates(keep_months) c WHERE c.part = lock_health_partition.part;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'retention: % is not a health partition older than % months',
            part, keep_months USING ERRCODE = 'invalid_parameter_value';
    END IF;
    EXECUTE format('LOCK TABLE %I IN SHARE MODE', part);
    range_from := to_char(lo, 'YYYY-MM-DD HH24:MI:SS') || '+00';
    range_to := to_char(hi, 'YYYY-MM-DD HH24:MI:SS') || '+00';
END
$$;
COMMENT ON FUNCTION lock_health_partition(text, integer) IS
    'Checks that part is a retention candidate for keep_months, locks it against writes (SHARE) for the transaction and returns its range as UTC text. Taken before a retention archive is read.';

-- Drops one partition named by health_retention_candidates(keep_months), in
-- the caller's transaction: locks it against writes, counts its rows (when
-- 'archived_rows' is given it must match: the archive holds every row
-- dropped), detaches it, drops it and writes the audit row. The archive
-- arguments are all NULL (no archive) or all given. Returns the rows
-- dropped. DETACH takes ACCESS EXCLUSIVE on the parent (and its default
-- partition) for the rest of the transaction, so the caller commits at once;
-- it gives up after lock_timeout 5 s (retried at the next upkeep) rather
-- than hold every insert behind it for long.
CREATE OR REPLACE FUNCTION drop_health_partition(part text, keep_months integer,
                                                 archived_rows bigint DEFAULT NULL,
                                                 archive_file text DEFAULT NULL,
                                                 archive_sha256 text DEFAULT NULL,
                                                 archive_bytes bigint DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET lock_timeout = '5s'
SET TimeZone = 'UTC'
AS $$
DECLARE
    lo timestamptz;
    hi timestamptz;
    n  bigint;
BEGIN
    IF (archive_file IS NULL) <> (archive_sha256 IS NULL)
       OR (archive_file IS NULL) <> (archived_rows IS NULL)
       OR (archive_file IS NULL) <> (archive_bytes IS NULL) THEN
        RAISE EXCEPTION 'drop_health_partition: archive file, checksum, rows and bytes go together'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF archive_sha256 IS NOT NULL AND archive_sha256 !~ '^[0-9a-f]{64}$' THEN
        RAISE EXCEPTION 'drop_health_partition: archive_sha256 is not a SHA-256 hex digest'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF length(archive_file) > 4096 OR archived_rows < 0 OR archive_bytes < 0 THEN
        RAISE EXCEPTION 'drop_health_partition: bad archive description'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- A candidate (else 22023), locked against writes (SHARE; held already
    -- when the caller archived it).
    SELECT l.range_from::timestamptz, l.range_to::timestamptz INTO lo, hi
      FROM lock_health_partition(part, keep_months) l;
    EXECUTE format('SELECT count(*) FROM %I', part) INTO n;
    IF archived_rows IS NOT NULL AND n <> archived_rows THEN
        RAISE EXCEPTION 'drop_health_partition: % holds % rows, the archive % (not dropped)',
            part, n, archived_rows USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    EXECUTE format('ALTER TABLE t_user_health_data DETACH PARTITION %I', part);
    EXECUTE format('DROP TABLE %I', part);
    INSERT INTO t_partition_retention_audit
        (partition_name, range_from, range_to, row_count, keep_months,
         archive_file, archive_sha256, archive_bytes)
    VALUES (part, lo, hi, n, keep_months, archive_file, archive_sha256, archive_bytes);
    RAISE LOG 'drop_health_partition: dropped % (% rows, archive %)', part, n,
        coalesce(archive_file, 'none');
    RETURN n;
END
$$;

DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION health_retention_candidates(integer, timestamptz)'
                   ' SET search_path = %I, pg_temp', current_schema());
    EXECUTE format('ALTER FUNCTION lock_health_partition(text, integer) SET search_path = %I, pg_temp',
                   current_schema());
    EXECUTE format('ALTER FUNCTION drop_health_partition(text, integer, bigint, text, text, bigint)'
                   ' SET search_path = %I, pg_temp', current_schema());
END
$$;
REVOKE ALL ON FUNCTION lock_health_partition(text, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION drop_health_partition(text, integer, bigint, text, text, bigint) FROM PUBLIC;

COMMENT ON FUNCTION drop_health_partition(text, integer, bigint, text, text, bigint) IS
    'Retention: detaches and drops one partition that health_retention_candidates(keep_months) lists, after checking its row count against the archive''s (when archived), and audits it in t_partition_retention_audit. Returns the rows dropped. SECURITY DEFINER: the ingest role needs only EXECUTE.';
