-- 003_compat.sql -- downstream readers and historical data (issue 16 part 4).
-- Applied once, in one transaction, by scripts/migrate.sh (no BEGIN/COMMIT);
-- also safe to run again by hand (IF NOT EXISTS / OR REPLACE throughout).
-- Creates no roles: the reporting role and its grants are in docs/schema.md.
--
-- 1. Schema "legacy": views with the old service's table and column names
--    and values, for its jobs, dashboards and reports, run unmodified by a
--    role whose search_path is "legacy, public".
-- 2. ensure_health_months(date[]): creates the monthly partitions of the
--    given months (the store calls it before a batch that touches a month
--    without one), so back-filled readings land in their month, not in the
--    default partition. ensure_health_partitions() becomes a caller of it:
--    one implementation of "create a month".
-- 3. upload_method 'import' (scripts/import).

-- 3. Rows back-filled by scripts/import -------------------------------------------

ALTER TABLE t_user_health_data DROP CONSTRAINT IF EXISTS t_user_health_data_upload_method_check;
ALTER TABLE t_user_health_data ADD CONSTRAINT t_user_health_data_upload_method_check
    CHECK (upload_method IN ('stream_v2', 'optimized', 'import'));
COMMENT ON COLUMN t_user_health_data.upload_method IS
    'Path that stored the row: stream_v2 = Redis stream + consumer, optimized = legacy direct write, import = scripts/import back-fill. The rollout consistency check counts by it.';

-- 2. Partitions for any month ---------------------------------------------------------
-- As ensure_health_partitions() of 001 did for its window (see the comment
-- there): a missing month is made as a standalone table, its rows moved into
-- it from the default partition, and attached, under EXCLUSIVE on the parent
-- (ONLY: reads go on) and ACCESS EXCLUSIVE on the default, all in the
-- caller's transaction. The check for missing months takes no lock; only
-- when one is missing are the advisory lock 7262022 (one creator at a time:
-- two workers back-filling the same month wait for each other, the second
-- finds it made) and the table locks taken (the second worker then holds
-- them for a moment and creates nothing). Callers must not hold locks on
-- t_user_health_data (call it in a transaction of its own) so that waiting
-- for writers cannot deadlock.
CREATE OR REPLACE FUNCTION ensure_health_months(months date[])
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET lock_timeout = '5s'
AS $$
DECLARE
    m       date;
    part    text;
    lo      text;
    hi      text;
    cols    text;
    moved   bigint;
    created integer := 0;
BEGIN
    IF months IS NULL OR cardinality(months) > 1200 THEN
        RAISE EXCEPTION 'ensure_health_months: 0..1200 months, not %', cardinality(months);
    END IF;
    -- The months readings may have (the validation's range): no more tables
    -- than that can ever be asked for.
    IF EXISTS (SELECT 1 FROM unnest(months) u
                WHERE u IS NULL OR u < DATE '2000-01-01' OR u >= DATE '2100-01-01') THEN
        RAISE EXCEPTION 'ensure_health_months: months must be in 2000-01 .. 2099-12';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM unnest(months) u
                    WHERE to_regclass(quote_ident('t_user_health_data_' || to_char(u, 'YYYYMM')))
                          IS NULL) THEN
        RETURN 0;   -- the usual case: nothing locked, nothing written
    END IF;

    -- One creator at a time. The table locks come next, before the months
    -- are checked again: taking a relation lock makes this session read the
    -- catalog changes committed meanwhile (an advisory lock does not), so a
    -- month another worker just created is seen and skipped, not created
    -- twice (42P07).
    PERFORM pg_advisory_xact_lock(7262022);
    LOCK TABLE ONLY t_user_health_data IN EXCLUSIVE MODE;
    LOCK TABLE t_user_health_data_default IN ACCESS EXCLUSIVE MODE;
    SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) INTO cols
      FROM pg_attribute
     WHERE attrelid = 't_user_health_data'::regclass AND attnum > 0 AND NOT attisdropped;

    FOR m IN SELECT DISTINCT date_trunc('month', u)::date FROM unnest(months) u ORDER BY 1 LOOP
        part := 't_user_health_data_' || to_char(m, 'YYYYMM');
        CONTINUE WHEN to_regclass(quote_ident(part)) IS NOT NULL;

        lo := to_char(m, 'YYYY-MM-DD') || ' 00:00:00+00';
        hi := to_char((m + interval '1 month')::date, 'YYYY-MM-DD') || ' 00:00:00+00';

        BEGIN
            EXECUTE format('CREATE TABLE %I (LIKE t_user_health_data INCLUDING DEFAULTS INCLUDING CONSTRAINTS,'
                           ' CONSTRAINT %I CHECK (ts >= %L AND ts < %L))',
                           part, part || '_bound', lo, hi);
        EXCEPTION WHEN duplicate_table THEN
            -- Made meanwhile after all (by a creator outside this lock):
            -- its month is there, nothing to do.
            RAISE LOG 'ensure_health_months: % exists already', part;
            CONTINUE;
        END;
        EXECUTE format('WITH moved AS (DELETE FROM t_user_health_data_default'
                       ' WHERE ts >= %L AND ts < %L RETURNING %s)'
                       ' INSERT INTO %I (%s) SELECT %s FROM moved',
                       lo, hi, cols, part, cols, cols);
        GET DIAGNOSTICS moved = ROW_COUNT;
        EXECUTE format('ALTER TABLE t_user_health_data ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                       part, lo, hi);
        EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', part, part || '_bound');
        RAISE LOG 'ensure_health_months: created %, moved % rows from the default partition',
                  part, moved;
        created := created + 1;
    END LOOP;
    RETURN created;
END
$$;

-- Same window and contract as in 001, now through ensure_health_months().
CREATE OR REPLACE FUNCTION ensure_health_partitions(months_ahead integer DEFAULT 3)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET lock_timeout = '5s'
AS $$
DECLARE
    this_month date := date_trunc('month', now() AT TIME ZONE 'UTC')::date;
BEGIN
    IF months_ahead IS NULL OR months_ahead < 0 OR months_ahead > 120 THEN
        RAISE EXCEPTION 'ensure_health_partitions: months_ahead must be 0..120, not %', months_ahead;
    END IF;
    RETURN ensure_health_months(ARRAY(
        SELECT (this_month + make_interval(months => i))::date
          FROM generate_series(-1, months_ahead) i
         WHERE (this_month + make_interval(months => i))::date < DATE '2100-01-01'));
END
$$;

DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION ensure_health_months(date[]) SET search_path = %I, pg_temp',
                   current_schema());
    EXECUTE format('ALTER FUNCTION ensure_health_partitions(integer) SET search_path = %I, pg_temp',
                   current_schema());
END
$$;
REVOKE ALL ON FUNCTION ensure_health_months(date[]) FROM PUBLIC;

COMMENT ON FUNCTION ensure_health_months(date[]) IS
    'Creates the missing monthly partitions of t_user_health_data for the given months (any day of each; 2000-01..2099-12, at most 1200), moving their rows out of the default partition; returns how many it created. Takes no lock when none is missing. The store calls it before a batch touching a month it has not seen.';

-- 1. The old service's names ----------------------------------------------------------

CREATE SCHEMA IF NOT EXISTS legacy;
COMMENT ON SCHEMA legacy IS
    'Views with the old service''s table and column names and values, for its unmodified reports (search_path = legacy, public). Read-only.';

-- Our alert_type (the metric, or the event type) as the old service named it.
-- IMMUTABLE and a plain CASE, so an expression index serves
-- legacy.t_alert_info's alert_type; change it only with a REINDEX of
-- t_alert_info_legacy_type_time_idx (in the same migration).
CREATE OR REPLACE FUNCTION legacy.alert_type_of(t text)
RETURNS text
LANGUAGE sql
IMMUTABLE PARALLEL SAFE STRICT
RETURN CASE t
    WHEN 'heart_rate'    THEN 'heart_rate_abnormal'
    WHEN 'blood_oxygen'  THEN 'blood_oxygen_low'
    WHEN 'temperature'   THEN 'body_temperature_high'
    WHEN 'pressure_high' THEN 'blood_pressure_abnormal'
    WHEN 'pressure_low'  THEN 'blood_pressure_abnormal'
    WHEN 'stress'        THEN 'stress_high'
    WHEN 'SOS'           THEN 'sos_alert'
    WHEN 'FALL_DOWN'     THEN 'fall_detected'
    ELSE lower(t)
END;
COMMENT ON FUNCTION legacy.alert_type_of(text) IS
    'Old alert_type of one of ours (docs/schema.md, "Compatibility views"); other event types in lower case.';

-- Plain column renames of one table: PostgreSQL inlines the view, so a
-- predicate on "timestamp" is a predicate on ts (partition pruning and every
-- index of the table apply). The tables are named unqualified: they resolve
-- in the schema the migrations run in, as in 001 ("legacy" is not on the
-- migration's search_path).
CREATE OR REPLACE VIEW legacy.t_user_health_data AS
SELECT h.id, h.device_sn, h.ts AS "timestamp", h.user_id, h.customer_id, h.org_id,
       h.heart_rate, h.blood_oxygen, h.temperature AS body_temperature, h.temperature,
       h.pressure_high, h.pressure_low, h.stress, h.step, h.distance, h.calorie,
       h.latitude, h.longitude, h.altitude, h.sleep, h.sleep AS sleep_data,
       h.source_method, h.upload_method, h.stream_id, h.batch_id, h.create_time
  FROM t_user_health_data h;
COMMENT ON VIEW legacy.t_user_health_data IS
    'public.t_user_health_data with the old names: "timestamp" = ts, body_temperature = temperature, sleep_data = sleep.';

CREATE OR REPLACE VIEW legacy.t_alert_info AS
SELECT a.id, a.rule_id, a.user_id, a.customer_id, a.org_id, a.device_sn,
       legacy.alert_type_of(a.alert_type) AS alert_type, a.alert_value,
       a.level, a.level AS alert_level, a.status, a.alert_time AS occur_at,
       a.stream_id, a.create_time, a.alert_type AS source_type
  FROM t_alert_info a;
COMMENT ON VIEW legacy.t_alert_info IS
    'public.t_alert_info with the old names and values: alert_type = legacy.alert_type_of(alert_type) (ours in source_type), occur_at = alert_time, alert_level = level.';

-- The old reports count alerts by type and time.
CREATE INDEX IF NOT EXISTS t_alert_info_legacy_type_time_idx
    ON t_alert_info (legacy.alert_type_of(alert_type), alert_time);
