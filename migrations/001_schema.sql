-- 001_schema.sql -- the whole ljwx-ingest schema (SPEC §6), PostgreSQL 15.
-- Applied once, in one transaction, by scripts/migrate.sh (no BEGIN/COMMIT
-- here). Creates no roles and grants nothing: see docs/schema.md.

-- Who wears which watch --------------------------------------------------------
-- Owned by the user-management side; ingest only reads them (enrichment:
-- device_sn -> sys_user.id, sys_user.customer_id, sys_user_org.org_id, rows
-- with is_deleted <> 0 ignored).

CREATE TABLE sys_user (
    id          bigserial PRIMARY KEY,
    user_name   varchar(64),
    device_sn   varchar(64),
    customer_id bigint,
    is_deleted  smallint NOT NULL DEFAULT 0,
    create_time timestamptz DEFAULT now()
);
CREATE INDEX sys_user_device_sn_idx ON sys_user (device_sn) WHERE is_deleted = 0;
COMMENT ON TABLE sys_user IS 'Users and the watch each wears; is_deleted <> 0 is a soft delete.';
COMMENT ON COLUMN sys_user.device_sn IS 'Serial of the watch the user wears; enrichment key (live rows only).';

CREATE TABLE sys_user_org (
    id          bigserial PRIMARY KEY,
    user_id     bigint NOT NULL,
    org_id      bigint NOT NULL,
    customer_id bigint,
    is_deleted  smallint NOT NULL DEFAULT 0
);
CREATE INDEX sys_user_org_user_id_idx ON sys_user_org (user_id);
COMMENT ON TABLE sys_user_org IS
    'Organisation membership of users (user_id = sys_user.id); is_deleted <> 0 is a soft delete. With several live memberships enrichment takes the lowest org_id.';

-- Health readings ----------------------------------------------------------------

CREATE SEQUENCE t_user_health_data_id_seq;

-- The column list is the COPY column list of common/ (COPYENC_HEALTH_COLUMNS):
-- do not reorder or rename.
CREATE TABLE t_user_health_data (
    id            bigint NOT NULL DEFAULT nextval('t_user_health_data_id_seq'),
    device_sn     varchar(64) NOT NULL,
    ts            timestamptz NOT NULL,
    user_id       bigint,
    customer_id   bigint,
    org_id        bigint,
    heart_rate    integer,
    blood_oxygen  integer,
    temperature   double precision,
    pressure_high integer,
    pressure_low  integer,
    stress        integer,
    step          integer,
    distance      integer,
    calorie       integer,
    latitude      double precision,
    longitude     double precision,
    altitude      double precision,
    sleep         text,
    source_method varchar(20) NOT NULL DEFAULT 'api',
    upload_method varchar(20) NOT NULL
                  CONSTRAINT t_user_health_data_upload_method_check
                  CHECK (upload_method IN ('stream_v2', 'optimized')),
    stream_id     varchar(64),
    batch_id      varchar(64),
    create_time   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_sn, ts)
) PARTITION BY RANGE (ts);

ALTER SEQUENCE t_user_health_data_id_seq OWNED BY t_user_health_data.id;

-- Any row whose month has no partition lands here: no reading is ever refused.
CREATE TABLE t_user_health_data_default PARTITION OF t_user_health_data DEFAULT;

-- Created on the parent, so every partition (present and future) gets them.
CREATE INDEX t_user_health_data_ts_idx          ON t_user_health_data (ts);
CREATE INDEX t_user_health_data_stream_id_idx   ON t_user_health_data (stream_id);
CREATE INDEX t_user_health_data_user_ts_idx     ON t_user_health_data (user_id, ts);
CREATE INDEX t_user_health_data_upload_method_idx ON t_user_health_data (upload_method, create_time);

COMMENT ON TABLE t_user_health_data IS
    'One row per reading, unique on (device_sn, ts): a reading sent twice, on either path, is stored once. Range-partitioned by UTC month of ts (t_user_health_data_YYYYMM) plus a default partition.';
COMMENT ON COLUMN t_user_health_data.id IS 'Surrogate number, not a key: the key is (device_sn, ts).';
COMMENT ON COLUMN t_user_health_data.ts IS
    'Reading time from the device (timestamp), or the server receive time when the device sent none; with device_sn the identity of a reading; the partition key.';
COMMENT ON COLUMN t_user_health_data.upload_method IS
    'Path that stored the row: stream_v2 = Redis stream + consumer, optimized = legacy direct write. The rollout consistency check counts by it.';
COMMENT ON COLUMN t_user_health_data.source_method IS
    'The device''s own upload label (uploadMethod in the upload, e.g. wifi, 4g); api when it sent none.';
COMMENT ON COLUMN t_user_health_data.stream_id IS
    'Redis stream entry ID of the upload the row came from (trace key); NULL on the legacy path.';
COMMENT ON COLUMN t_user_health_data.batch_id IS 'batchId of the upload, when the device sent one.';
COMMENT ON COLUMN t_user_health_data.sleep IS 'Sleep data as sent (string, or JSON kept as text).';
COMMENT ON COLUMN t_user_health_data.create_time IS 'When the row was stored (transaction time).';

-- Monthly partitions, created ahead --------------------------------------------
-- Months are UTC months: t_user_health_data_YYYYMM holds
-- [YYYY-MM-01 00:00 UTC, first of the next month 00:00 UTC).
--
-- A row whose month has no partition yet sits in the default partition.
-- CREATE TABLE ... PARTITION OF would then fail ("updated partition constraint
-- for default partition would be violated"), so each missing month is made as
-- a standalone table, the month's rows are moved into it from the default
-- (DELETE ... RETURNING), and it is attached -- all in the caller's
-- transaction. Before that it locks the parent against writes (EXCLUSIVE,
-- ONLY the parent: reads go on) and the default partition (ACCESS EXCLUSIVE,
-- which ATTACH needs anyway): no writer can be routed to the default while its
-- range shrinks (PostgreSQL would refuse such a row), and no lock upgrade.
-- Writers wait a moment and then route to the new partitions. The locks are
-- taken only when a partition is actually missing.
--
-- SECURITY DEFINER, so the ingest role can run the hourly upkeep with EXECUTE
-- only (no CREATE); its search_path is pinned to this schema below.
CREATE FUNCTION ensure_health_partitions(months_ahead integer DEFAULT 3)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
-- Give up (error, retried at the next upkeep) rather than stall ingest for long
-- behind a long transaction that writes the table.
SET lock_timeout = '5s'
AS $$
DECLARE
    this_month date := date_trunc('month', now() AT TIME ZONE 'UTC')::date;
    m          date;
    part       text;
    lo         text;
    hi         text;
    cols       text;
    moved      bigint;
    locked     boolean := false;
    created    integer := 0;
BEGIN
    IF months_ahead IS NULL OR months_ahead < 0 OR months_ahead > 120 THEN
        RAISE EXCEPTION 'ensure_health_partitions: months_ahead must be 0..120, not %', months_ahead;
    END IF;

    -- One maintainer at a time (two would race on CREATE TABLE of the same name).
    PERFORM pg_advisory_xact_lock(7262022);

    FOR i IN -1 .. months_ahead LOOP
        m    := (this_month + make_interval(months => i))::date;
        part := 't_user_health_data_' || to_char(m, 'YYYYMM');
        CONTINUE WHEN to_regclass(quote_ident(part)) IS NOT NULL;

        -- Bounds as explicit UTC literals: independent of TimeZone and DateStyle.
        lo := to_char(m, 'YYYY-MM-DD') || ' 00:00:00+00';
        hi := to_char((m + interval '1 month')::date, 'YYYY-MM-DD') || ' 00:00:00+00';

        IF NOT locked THEN
            -- Writers first wait here (EXCLUSIVE on the parent only: reads go
            -- on), so none is routed to the default partition while its range
            -- shrinks: after COMMIT they route to the new partitions.
            LOCK TABLE ONLY t_user_health_data IN EXCLUSIVE MODE;
            LOCK TABLE t_user_health_data_default IN ACCESS EXCLUSIVE MODE;
            SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) INTO cols
              FROM pg_attribute
             WHERE attrelid = 't_user_health_data'::regclass AND attnum > 0 AND NOT attisdropped;
            locked := true;
        END IF;

        -- Standalone table shaped like the parent (defaults, NOT NULL and CHECK
        -- constraints), with a CHECK equal to the partition bound so that ATTACH
        -- needs no validation scan of the moved rows.
        EXECUTE format('CREATE TABLE %I (LIKE t_user_health_data INCLUDING DEFAULTS INCLUDING CONSTRAINTS,'
                       ' CONSTRAINT %I CHECK (ts >= %L AND ts < %L))',
                       part, part || '_bound', lo, hi);
        EXECUTE format('WITH moved AS (DELETE FROM t_user_health_data_default'
                       ' WHERE ts >= %L AND ts < %L RETURNING %s)'
                       ' INSERT INTO %I (%s) SELECT %s FROM moved',
                       lo, hi, cols, part, cols, cols);
        GET DIAGNOSTICS moved = ROW_COUNT;
        EXECUTE format('ALTER TABLE t_user_health_data ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                       part, lo, hi);
        EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', part, part || '_bound');
        RAISE LOG 'ensure_health_partitions: created %, moved % rows from the default partition',
                  part, moved;
        created := created + 1;
    END LOOP;
    RETURN created;
END
$$;

-- Pin the function's search_path to the schema these tables were just created
-- in, pg_temp last (a SECURITY DEFINER function must not resolve names through
-- the caller's temporary schema).
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION ensure_health_partitions(integer) SET search_path = %I, pg_temp',
                   current_schema());
END
$$;
REVOKE ALL ON FUNCTION ensure_health_partitions(integer) FROM PUBLIC;

COMMENT ON FUNCTION ensure_health_partitions(integer) IS
    'Creates the missing monthly partitions of t_user_health_data (UTC months) from last month to months_ahead (0..120) months ahead, moving rows of those months out of the default partition; returns how many it created. Run at least monthly (consumers run it hourly).';

-- Device status ------------------------------------------------------------------

CREATE TABLE t_device_info (
    device_sn        varchar(64) PRIMARY KEY,
    info             jsonb NOT NULL,
    battery_level    integer,
    wear_state       varchar(32),
    firmware_version varchar(64),
    user_id          bigint,
    customer_id      bigint,
    org_id           bigint,
    stream_id        varchar(64),
    report_time      timestamptz NOT NULL,
    update_time      timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE t_device_info IS
    'Latest status report per device (upserted; an older report never replaces a newer one).';
COMMENT ON COLUMN t_device_info.info IS 'The whole report as sent (firmware, battery, wear state, network, ...).';
COMMENT ON COLUMN t_device_info.report_time IS 'Time of the report (device time, else receive time).';
COMMENT ON COLUMN t_device_info.stream_id IS 'Redis stream entry ID of the report.';

CREATE TABLE t_device_info_history (
    id          bigserial PRIMARY KEY,
    device_sn   varchar(64) NOT NULL,
    info        jsonb NOT NULL,
    report_time timestamptz NOT NULL,
    stream_id   varchar(64) UNIQUE,
    create_time timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX t_device_info_history_device_idx ON t_device_info_history (device_sn, report_time);
COMMENT ON TABLE t_device_info_history IS 'Every status report, appended.';
COMMENT ON COLUMN t_device_info_history.stream_id IS
    'Redis stream entry ID of the report; unique, so a redelivered entry adds nothing.';

-- Events -------------------------------------------------------------------------

CREATE TABLE t_common_event (
    id          bigserial PRIMARY KEY,
    device_sn   varchar(64) NOT NULL,
    event_type  varchar(64) NOT NULL,
    event_time  timestamptz NOT NULL,
    payload     jsonb,
    user_id     bigint,
    customer_id bigint,
    org_id      bigint,
    stream_id   varchar(64),
    create_time timestamptz NOT NULL DEFAULT now(),
    UNIQUE (device_sn, event_type, event_time)
);
COMMENT ON TABLE t_common_event IS
    'Device events (SOS, FALL_DOWN, LOW_BATTERY, ...); unique per device, type and time, so a redelivered event is stored once.';
COMMENT ON COLUMN t_common_event.event_time IS 'Event time from the device, else receive time; part of the unique key.';
COMMENT ON COLUMN t_common_event.stream_id IS 'Redis stream entry ID of the upload.';

-- Alerts -------------------------------------------------------------------------

CREATE TABLE t_alert_rule (
    id          bigserial PRIMARY KEY,
    rule_name   varchar(64) NOT NULL UNIQUE,
    metric      varchar(32) NOT NULL,
    comparison  varchar(2) NOT NULL CHECK (comparison IN ('>', '<', '>=', '<=', '=')),
    threshold   double precision,
    event_type  varchar(64),
    level       varchar(16) NOT NULL CHECK (level IN ('minor', 'major', 'critical')),
    enabled     boolean NOT NULL DEFAULT true,
    create_time timestamptz NOT NULL DEFAULT now(),
    update_time timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE t_alert_rule IS
    'Alert rules. Per record and metric the most severe enabled matching rule raises one alert.';
COMMENT ON COLUMN t_alert_rule.metric IS
    'A t_user_health_data column (heart_rate, blood_oxygen, temperature, pressure_high, pressure_low, stress) compared with threshold, or ''event'' matched on event_type.';
COMMENT ON COLUMN t_alert_rule.threshold IS 'Compared as: value <comparison> threshold. NULL for event rules.';
COMMENT ON COLUMN t_alert_rule.event_type IS 'For metric = ''event'': the event type that raises the alert (SOS, FALL_DOWN, ...).';

INSERT INTO t_alert_rule (rule_name, metric, comparison, threshold, event_type, level) VALUES
    ('heart_rate_high_major', 'heart_rate',   '>',  140,  NULL,        'major'),
    ('heart_rate_high',       'heart_rate',   '>',  120,  NULL,        'minor'),
    ('heart_rate_low_major',  'heart_rate',   '<',  40,   NULL,        'major'),
    ('heart_rate_low',        'heart_rate',   '<',  50,   NULL,        'minor'),
    ('blood_oxygen_critical', 'blood_oxygen', '<',  85,   NULL,        'critical'),
    ('blood_oxygen_low',      'blood_oxygen', '<',  90,   NULL,        'major'),
    ('temperature_high',      'temperature',  '>=', 37.3, NULL,        'minor'),
    ('event_sos',             'event',        '=',  NULL, 'SOS',       'critical'),
    ('event_fall',            'event',        '=',  NULL, 'FALL_DOWN', 'critical')
ON CONFLICT (rule_name) DO NOTHING;

CREATE TABLE t_alert_info (
    id          bigserial PRIMARY KEY,
    rule_id     bigint REFERENCES t_alert_rule (id) ON DELETE SET NULL,
    user_id     bigint,
    customer_id bigint,
    org_id      bigint,
    device_sn   varchar(64) NOT NULL,
    alert_type  varchar(64) NOT NULL,
    alert_value double precision,
    level       varchar(16) NOT NULL,
    status      varchar(16) NOT NULL DEFAULT 'NEW',
    alert_time  timestamptz NOT NULL,
    stream_id   varchar(64),
    create_time timestamptz NOT NULL DEFAULT now(),
    UNIQUE (device_sn, alert_type, alert_time)
);
CREATE INDEX t_alert_info_status_idx ON t_alert_info (status, create_time);
COMMENT ON TABLE t_alert_info IS
    'Raised alerts; at most one per device, type and reading/event time, so a redelivered record raises nothing again.';
COMMENT ON COLUMN t_alert_info.alert_type IS 'The metric (heart_rate, blood_oxygen, ...) or the event type (SOS, FALL_DOWN, ...).';
COMMENT ON COLUMN t_alert_info.alert_time IS 'ts of the reading, or event_time of the event, that raised it.';
COMMENT ON COLUMN t_alert_info.status IS 'NEW when raised; notifiers and operators move it on.';
COMMENT ON COLUMN t_alert_info.stream_id IS 'Redis stream entry ID of the upload; NULL on the legacy path.';

-- Gray release -------------------------------------------------------------------

CREATE TABLE t_stream_ratio_audit (
    id         bigserial PRIMARY KEY,
    old_ratio  double precision,
    new_ratio  double precision NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now(),
    caller     varchar(128),
    reason     varchar(64)
);
COMMENT ON TABLE t_stream_ratio_audit IS
    'Every change of the stream traffic ratio (gray release and emergency rollback): from what, to what, when, by whom.';
COMMENT ON COLUMN t_stream_ratio_audit.caller IS 'Client address of the admin call.';
COMMENT ON COLUMN t_stream_ratio_audit.reason IS 'Why: ratio_change (POST /api/stream_traffic_ratio) or emergency_rollback.';

-- A fresh database gets last month .. three months ahead.
SELECT ensure_health_partitions(3);
