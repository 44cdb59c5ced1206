-- 001_schema.sql -- the whole ljwx-ingest schema (SPEC §6).
-- Applied once, in one transaction, by scripts/migrate.sh.

-- Who wears which watch ------------------------------------------------------

CREATE TABLE sys_user (
    id          bigserial PRIMARY KEY,
    user_name   varchar(64),
    device_sn   varchar(64),
    customer_id bigint,
    is_deleted  smallint NOT NULL DEFAULT 0,
    create_time timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sys_user_device_sn_idx ON sys_user (device_sn) WHERE is_deleted = 0;
COMMENT ON TABLE sys_user IS 'Users and the watch each wears; is_deleted <> 0 is a soft delete.';

CREATE TABLE sys_user_org (
    id          bigserial PRIMARY KEY,
    user_id     bigint NOT NULL,
    org_id      bigint NOT NULL,
    customer_id bigint,
    is_deleted  smallint NOT NULL DEFAULT 0
);
CREATE INDEX sys_user_org_user_idx ON sys_user_org (user_id) WHERE is_deleted = 0;
COMMENT ON TABLE sys_user_org IS 'Organisation membership of users; enrichment takes the lowest org_id.';

-- Health readings --------------------------------------------------------------

CREATE SEQUENCE t_user_health_data_id_seq;

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
    upload_method varchar(20) NOT NULL CHECK (upload_method IN ('stream_v2', 'optimized')),
    stream_id     varchar(64),
    batch_id      varchar(64),
    create_time   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_sn, ts)
) PARTITION BY RANGE (ts);

ALTER SEQUENCE t_user_health_data_id_seq OWNED BY t_user_health_data.id;

CREATE TABLE t_user_health_data_default PARTITION OF t_user_health_data DEFAULT;

CREATE INDEX t_user_health_data_ts_idx ON t_user_health_data (ts);
CREATE INDEX t_user_health_data_stream_id_idx ON t_user_health_data (stream_id);
CREATE INDEX t_user_health_data_user_ts_idx ON t_user_health_data (user_id, ts);
CREATE INDEX t_user_health_data_method_idx ON t_user_health_data (upload_method, create_time);

COMMENT ON TABLE t_user_health_data IS
    'One row per reading, unique on (device_sn, ts): a reading sent twice, on either path, is stored once.';
COMMENT ON COLUMN t_user_health_data.ts IS 'Reading time from the device (or receive time when it sent none); the partition key.';
COMMENT ON COLUMN t_user_health_data.upload_method IS 'Path that stored the row: stream_v2 (stream) or optimized (legacy direct write).';
COMMENT ON COLUMN t_user_health_data.source_method IS 'The device''s own upload label (uploadMethod, e.g. wifi); api when absent.';
COMMENT ON COLUMN t_user_health_data.stream_id IS 'Redis stream entry ID the row came from; NULL on the legacy path.';

-- Monthly partitions, created ahead. A row whose month has no partition yet
-- lands in the default partition; when that month's partition is created
-- later, its rows are moved out of the default first (otherwise CREATE
-- ... PARTITION OF would fail on them).
CREATE FUNCTION ensure_health_partitions(months_ahead integer DEFAULT 3)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    first_month date := date_trunc('month', now() AT TIME ZONE 'UTC')::date - interval '1 month';
    m date;
    name text;
    lo timestamptz;
    hi timestamptz;
    created integer := 0;
BEGIN
    FOR i IN 0 .. months_ahead + 1 LOOP
        m := first_month + make_interval(months => i);
        name := 't_user_health_data_' || to_char(m, 'YYYYMM');
        CONTINUE WHEN to_regclass(name) IS NOT NULL;
        lo := (m::timestamp AT TIME ZONE 'UTC');
        hi := ((m + interval '1 month')::timestamp AT TIME ZONE 'UTC');
        EXECUTE format('CREATE TABLE %I (LIKE t_user_health_data INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', name);
        EXECUTE format('WITH moved AS (DELETE FROM t_user_health_data_default'
                       ' WHERE ts >= $1 AND ts < $2 RETURNING *) INSERT INTO %I SELECT * FROM moved',
                       name) USING lo, hi;
        EXECUTE format('ALTER TABLE t_user_health_data ATTACH PARTITION %I'
                       ' FOR VALUES FROM (%L) TO (%L)', name, lo, hi);
        created := created + 1;
    END LOOP;
    RETURN created;
END
$$;
COMMENT ON FUNCTION ensure_health_partitions(integer) IS
    'Creates the monthly partitions of t_user_health_data from last month to months_ahead ahead; returns how many it created.';

-- Device status ---------------------------------------------------------------

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
COMMENT ON TABLE t_device_info IS 'Latest status report per device (upserted).';

CREATE TABLE t_device_info_history (
    id          bigserial PRIMARY KEY,
    device_sn   varchar(64) NOT NULL,
    info        jsonb NOT NULL,
    report_time timestamptz NOT NULL,
    stream_id   varchar(64) UNIQUE,
    create_time timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX t_device_info_history_device_idx ON t_device_info_history (device_sn, report_time);
COMMENT ON TABLE t_device_info_history IS 'Every status report; unique stream_id makes redelivery harmless.';

-- Events ------------------------------------------------------------------------

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
COMMENT ON TABLE t_common_event IS 'Device events (SOS, FALL_DOWN, LOW_BATTERY, ...), unique per device, type and time.';

-- Alerts ------------------------------------------------------------------------

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
    'metric is a health column (heart_rate, ...) compared with threshold, or ''event'' matched on event_type. Per record and metric the most severe matching rule wins.';

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
    rule_id     bigint REFERENCES t_alert_rule (id),
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
COMMENT ON TABLE t_alert_info IS 'Raised alerts; one per device, type (metric or event) and reading time.';

-- Gray release ------------------------------------------------------------------

CREATE TABLE t_stream_ratio_audit (
    id         bigserial PRIMARY KEY,
    old_ratio  double precision,
    new_ratio  double precision NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now(),
    caller     varchar(128),
    reason     varchar(64)
);
COMMENT ON TABLE t_stream_ratio_audit IS 'Every change of the stream traffic ratio: who, when, from what to what.';

SELECT ensure_health_partitions(3);
