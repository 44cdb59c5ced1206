-- 007_notify.sql -- alert delivery (issue 17, docs/alerts.md).
--
-- t_alert_info is the outbox: a row with status NEW has not been delivered
-- to every channel its route selects. ljwx-notifier claims such rows with a
-- lease (claimed_until), so two notifiers never work on one alert at once
-- and a notifier that died leaves its claims to the others when the lease
-- runs out. Claims are row-level only (no session state): they work through
-- PgBouncer in transaction pooling.
--
-- Status of an alert: NEW (to deliver) -> NOTIFIED (every selected channel
-- delivered) | FAILED (a channel gave up: a delivery dead letter, see
-- scripts/alerts) | SUPPRESSED (a repeat of the alert in suppressed_by) |
-- UNROUTED (its route selects no configured channel) | EXPIRED (still NEW
-- after --notify-max-age-s: never sent, so a first start after this
-- migration does not page people about last month). IMPORTED alerts
-- (back-filled by ljwx-import) are never delivered.

ALTER TABLE t_alert_info ADD COLUMN IF NOT EXISTS claimed_until timestamptz;
ALTER TABLE t_alert_info ADD COLUMN IF NOT EXISTS claimed_by varchar(128);
ALTER TABLE t_alert_info ADD COLUMN IF NOT EXISTS suppressed_count integer NOT NULL DEFAULT 0;
ALTER TABLE t_alert_info ADD COLUMN IF NOT EXISTS suppressed_by bigint;
ALTER TABLE t_alert_info ADD COLUMN IF NOT EXISTS notified_at timestamptz;
COMMENT ON COLUMN t_alert_info.claimed_until IS
    'NEW alerts: no notifier takes it before this time (a lease while one delivers it, or the time of its next retry).';
COMMENT ON COLUMN t_alert_info.claimed_by IS 'The notifier (host:pid:worker) holding the lease; NULL between retries.';
COMMENT ON COLUMN t_alert_info.suppressed_count IS
    'Later alerts of the same device and type within the suppression window that were not sent because of this one.';
COMMENT ON COLUMN t_alert_info.suppressed_by IS 'SUPPRESSED alerts: the alert they repeat (whose suppressed_count counts them).';
COMMENT ON COLUMN t_alert_info.notified_at IS 'When the alert left NEW (NOTIFIED, FAILED, UNROUTED, EXPIRED).';
COMMENT ON COLUMN t_alert_info.status IS
    'NEW when raised; ljwx-notifier moves it to NOTIFIED, FAILED, SUPPRESSED, UNROUTED or EXPIRED (docs/alerts.md); IMPORTED: back-filled, never delivered.';

-- What notifiers scan: only undelivered alerts, so it stays small.
CREATE INDEX IF NOT EXISTS t_alert_info_outbox_idx ON t_alert_info (id) WHERE status = 'NEW';
-- Suppression looks for the latest earlier alert of a device and type.
CREATE INDEX IF NOT EXISTS t_alert_info_device_type_idx ON t_alert_info (device_sn, alert_type, id);

-- Routing: which channels an alert of a level goes to. Rows with org_id NULL
-- are the default; an organisation with rows of its own uses only those
-- (enabled = false rows let it switch a channel off).
CREATE TABLE IF NOT EXISTS t_notify_route (
    id          bigserial PRIMARY KEY,
    org_id      bigint,
    level       varchar(16) NOT NULL CHECK (level IN ('minor', 'major', 'critical')),
    channel     varchar(16) NOT NULL CHECK (channel IN ('webhook', 'wechat', 'dingtalk', 'sms')),
    enabled     boolean NOT NULL DEFAULT true,
    create_time timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS t_notify_route_key
    ON t_notify_route (COALESCE(org_id, -1), level, channel);
COMMENT ON TABLE t_notify_route IS
    'Alert routing: level (and organisation) -> channel. org_id NULL: every organisation without rows of its own.';
COMMENT ON COLUMN t_notify_route.channel IS
    'webhook (every URL of LJ_ALERT_WEBHOOK_URL), wechat, dingtalk or sms; a channel not configured in the notifier is passed over.';

INSERT INTO t_notify_route (org_id, level, channel) VALUES
    (NULL, 'critical', 'webhook'), (NULL, 'critical', 'wechat'),
    (NULL, 'critical', 'dingtalk'), (NULL, 'critical', 'sms'),
    (NULL, 'major', 'webhook'), (NULL, 'major', 'wechat'),
    (NULL, 'major', 'dingtalk'), (NULL, 'major', 'sms'),
    (NULL, 'minor', 'webhook')
ON CONFLICT DO NOTHING;

-- The delivery log: one row per alert and delivery target (webhook, webhook2,
-- ..., wechat, dingtalk, sms). DEAD rows are the delivery dead letters.
CREATE TABLE IF NOT EXISTS t_alert_delivery (
    alert_id     bigint NOT NULL REFERENCES t_alert_info (id) ON DELETE CASCADE,
    channel      varchar(32) NOT NULL,
    attempts     integer NOT NULL DEFAULT 0,
    status       varchar(16) NOT NULL CHECK (status IN ('PENDING', 'DELIVERED', 'DEAD')),
    last_error   varchar(256),
    next_attempt timestamptz,
    delivered_at timestamptz,
    create_time  timestamptz NOT NULL DEFAULT now(),
    update_time  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (alert_id, channel)
);
CREATE INDEX IF NOT EXISTS t_alert_delivery_dead_idx ON t_alert_delivery (update_time)
    WHERE status = 'DEAD';
CREATE INDEX IF NOT EXISTS t_alert_delivery_update_idx ON t_alert_delivery (update_time);
COMMENT ON TABLE t_alert_delivery IS
    'Alert deliveries: attempts, outcome, last error (no URL or secret in it) per alert and target.';
COMMENT ON COLUMN t_alert_delivery.status IS
    'PENDING: to retry at next_attempt; DELIVERED; DEAD: gave up (4xx, or the retry budget spent); scripts/alerts replay sends it again.';
