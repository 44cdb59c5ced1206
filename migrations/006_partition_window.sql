-- 006_partition_window.sql -- partition creation never waits for a reader of
-- the default partition (review finding 6). Applied once by scripts/migrate.sh
-- (no BEGIN/COMMIT); safe to run again (CREATE OR REPLACE).
--
-- ensure_health_months() of 003 took EXCLUSIVE on t_user_health_data and then
-- waited up to its lock_timeout (5 s) for ACCESS EXCLUSIVE on the default
-- partition: one long reader of the default partition held every insert
-- behind the EXCLUSIVE lock for 5 s per missing month. Now the default
-- partition is locked with NOWAIT: when it is in use, the call fails at once
-- (SQLSTATE 55P03, the EXCLUSIVE lock released with the caller's
-- transaction), and the store keeps its fallback (partition.h): the rows go
-- to the default partition and the month is asked for again by a later
-- batch. Which months are asked for at all (a window around now, a few per
-- batch) is the store's business (--partition-window-months,
-- --partition-new-months); ljwx-import may ask for any month. Everything
-- else as in 003: same signature, grants, search_path, comment.

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
    -- Every insert queues behind the EXCLUSIVE lock from here on: never wait
    -- for a reader of the default partition (a report, a dump) while holding
    -- it. Its rows go to the default partition meanwhile; the caller asks
    -- again with a later batch.
    BEGIN
        LOCK TABLE t_user_health_data_default IN ACCESS EXCLUSIVE MODE NOWAIT;
    EXCEPTION WHEN lock_not_available THEN
        RAISE EXCEPTION USING ERRCODE = 'lock_not_available',
            MESSAGE = 'ensure_health_months: t_user_health_data_default is in use; no month created now',
            HINT = 'Readings of the missing months go to the default partition until a later call creates them.';
    END;
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

-- OR REPLACE keeps the grants (003 revoked PUBLIC) but not the settings of
-- ALTER FUNCTION: the search_path again, as 003 set it.
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION ensure_health_months(date[]) SET search_path = %I, pg_temp',
                   current_schema());
END
$$;
REVOKE ALL ON FUNCTION ensure_health_months(date[]) FROM PUBLIC;

COMMENT ON FUNCTION ensure_health_months(date[]) IS
    'Creates the missing monthly partitions of t_user_health_data for the given months (any day of each; 2000-01..2099-12, at most 1200), moving their rows out of the default partition; returns how many it created. Takes no lock when none is missing; fails at once (55P03) when the default partition is in use. The store calls it before a batch touching a month it has not seen (within its window).';
