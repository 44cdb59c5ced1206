#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "err.h"

enum cfg_type { CFG_T_INT, CFG_T_STR };

#define CFG_SECRET 1u

typedef struct cfg_option {
    const char *name;   /* flag: --name with '_' as '-' */
    const char *env;
    enum cfg_type type;
    size_t offset;
    size_t size;        /* for strings: the array size */
    const char *def;
    long min;
    long max;
    unsigned progs;
    unsigned flags;
    const char *help;
} cfg_option;

/* Settings every program has: the log level and PostgreSQL's. */
#define CFG_ANY (CFG_ALL | CFG_NOTIFIER)

#define OFF(f) offsetof(lj_config, f)
#define CFG_INT(name, env, field, def, min, max, progs, help) \
    {name, env, CFG_T_INT, OFF(field), sizeof(int), def, min, max, progs, 0, help}
#define CFG_STR(name, env, field, def, progs, flags, help) \
    {name, env, CFG_T_STR, OFF(field), sizeof(((lj_config *)0)->field), def, 0, 0, progs, \
     flags, help}

/* Alphabetical; every default works for a local run. */
static const cfg_option options[] = {
    CFG_STR("admin_token", "LJ_ADMIN_TOKEN", admin_token, "", CFG_PRODUCER, CFG_SECRET,
            "bearer token for admin endpoints; empty: loopback clients without proxy headers"),
    CFG_INT("addr_burst", "LJ_ADDR_BURST", addr_burst, "200", 1, 1000000, CFG_PRODUCER,
            "uploads one client address may send at once above --addr-rate"),
    CFG_INT("addr_rate", "LJ_ADDR_RATE", addr_rate, "0", 0, 1000000, CFG_PRODUCER,
            "uploads per second per client address (429 above); 0: off (watches share "
            "carrier NAT addresses)"),
    CFG_STR("alert_dingtalk_url", "LJ_ALERT_DINGTALK_URL", alert_dingtalk_url, "", CFG_NOTIFIER,
            CFG_SECRET, "DingTalk group robot webhook (https://oapi.dingtalk.com/robot/send?"
            "access_token=...); empty: no DingTalk channel"),
    CFG_STR("alert_sms_content_type", "LJ_ALERT_SMS_CONTENT_TYPE", alert_sms_content_type,
            "application/json", CFG_NOTIFIER, 0, "Content-Type of the SMS gateway request: "
            "application/json (placeholders JSON-escaped) or application/x-www-form-urlencoded "
            "(percent-encoded)"),
    CFG_STR("alert_sms_template", "LJ_ALERT_SMS_TEMPLATE", alert_sms_template, "", CFG_NOTIFIER,
            CFG_SECRET, "body of the SMS gateway request, with placeholders {id} {device_sn} "
            "{user} {org} {type} {value} {level} {time} {text} (docs/alerts.md)"),
    CFG_STR("alert_sms_url", "LJ_ALERT_SMS_URL", alert_sms_url, "", CFG_NOTIFIER, CFG_SECRET,
            "SMS gateway URL (POST of --alert-sms-template); empty: no SMS channel"),
    CFG_INT("alert_stream_maxlen", "LJ_ALERT_STREAM_MAXLEN", alert_stream_maxlen, "100000", 100,
            1000000000, CFG_BOTH,
            "alert_stream is trimmed to about this many entries (t_alert_info keeps every alert)"),
    CFG_STR("alert_wechat_url", "LJ_ALERT_WECHAT_URL", alert_wechat_url, "", CFG_NOTIFIER,
            CFG_SECRET, "WeChat Work group robot webhook (https://qyapi.weixin.qq.com/cgi-bin/"
            "webhook/send?key=...); empty: no WeChat channel"),
    CFG_STR("alert_webhook_url", "LJ_ALERT_WEBHOOK_URL", alert_webhook_url, "", CFG_NOTIFIER,
            CFG_SECRET, "generic JSON webhooks, comma-separated (at most 8): each gets a POST per "
            "alert with an Idempotency-Key header; empty: none"),
    CFG_INT("batch_adaptive", "LJ_BATCH_ADAPTIVE", batch_adaptive, "1", 0, 1, CFG_CONSUMER,
            "1: each read's COUNT follows lag and commit time between --batch-min and "
            "--batch-size; 0: always --batch-size"),
    CFG_INT("batch_min", "LJ_BATCH_MIN", batch_min, "10", 1, 10000, CFG_CONSUMER,
            "smallest adaptive COUNT: what a worker reads from a quiet stream"),
    CFG_INT("batch_size", "LJ_BATCH_SIZE", batch_size, "200", 1, 10000, CFG_CONSUMER,
            "max stream entries read per batch (XREADGROUP COUNT)"),
    CFG_INT("batch_target_ms", "LJ_BATCH_TARGET_MS", batch_target_ms, "200", 0, 60000,
            CFG_CONSUMER, "an adaptive batch that took longer to store is followed by a "
            "smaller one; 0: no such cut"),
    CFG_INT("block_ms", "LJ_BLOCK_MS", block_ms, "1000", 1, 60000, CFG_CONSUMER,
            "XREADGROUP BLOCK time in ms"),
    CFG_INT("breaker_cooldown_ms", "LJ_BREAKER_COOLDOWN_MS", breaker_cooldown_ms, "2000", 10,
            600000, CFG_PRODUCER,
            "an open circuit breaker waits this long before one probe request; doubles "
            "while probes fail"),
    CFG_INT("breaker_failures", "LJ_BREAKER_FAILURES", breaker_failures, "5", 0, 1000000,
            CFG_PRODUCER,
            "consecutive Redis (or legacy PostgreSQL) failures that open its circuit "
            "breaker; 0: off"),
    CFG_INT("breaker_max_cooldown_ms", "LJ_BREAKER_MAX_COOLDOWN_MS", breaker_max_cooldown_ms,
            "15000", 10, 3600000, CFG_PRODUCER, "longest cool-down of an open circuit breaker"),
    CFG_STR("chartjs_path", "LJ_CHARTJS_PATH", chartjs_path,
            "/usr/share/javascript/chart.js/chart.min.js", CFG_PRODUCER, 0,
            "Chart.js served at /dashboard/chart.js (Debian's libjs-chart.js)"),
    CFG_INT("claim_idle_ms", "LJ_CLAIM_IDLE_MS", claim_idle_ms, "60000", 1000, 86400000,
            CFG_CONSUMER, "entries pending this long on another consumer are taken over "
            "(keep it well above the PostgreSQL statement timeout)"),
    CFG_INT("dead_stream_maxlen", "LJ_DEAD_STREAM_MAXLEN", dead_stream_maxlen, "10000", 100,
            1000000000, CFG_CONSUMER,
            "each <stream>:dead is trimmed to about this many entries (t_dead_letter keeps all)"),
    CFG_INT("device_burst", "LJ_DEVICE_BURST", device_burst, "20", 1, 1000000, CFG_PRODUCER,
            "uploads one device may send at once above --device-rate"),
    CFG_INT("device_rate", "LJ_DEVICE_RATE", device_rate, "0", 0, 1000000, CFG_PRODUCER,
            "uploads per second per device_sn (429 / rate_limited above); 0: off; "
            "5 for a fleet in service (docs/flow-control.md)"),
    CFG_INT("device_workers", "LJ_DEVICE_WORKERS", device_workers, "1", 0, 64, CFG_CONSUMER,
            "worker threads for the device info stream"),
    CFG_INT("enrich_ttl_ms", "LJ_ENRICH_TTL_MS", enrich_ttl_ms, "60000", 0, 86400000, CFG_ALL,
            "how long a device's owner (user, customer, org) is cached"),
    CFG_STR("file", "LJ_IMPORT_FILE", import_file, "-", CFG_IMPORT, 0,
            "CSV file to import; -: standard input"),
    CFG_INT("health_timeout_ms", "LJ_HEALTH_TIMEOUT_MS", health_timeout_ms, "1000", 50, 60000,
            CFG_PRODUCER, "/api/health reports PostgreSQL down when its ping takes longer"),
    CFG_INT("header_timeout_ms", "LJ_HEADER_TIMEOUT_MS", header_timeout_ms, "10000", 100,
            600000, CFG_PRODUCER, "headers must be complete this long after the first byte (408)"),
    CFG_INT("body_timeout_ms", "LJ_BODY_TIMEOUT_MS", body_timeout_ms, "10000", 100, 600000,
            CFG_PRODUCER, "longest pause between two reads of a body (408); 6x: whole body"),
    CFG_STR("http_host", "LJ_HTTP_HOST", http_host, "127.0.0.1", CFG_PRODUCER, 0,
            "address the HTTP server listens on"),
    CFG_INT("event_workers", "LJ_EVENT_WORKERS", event_workers, "1", 0, 64, CFG_CONSUMER,
            "worker threads for the event stream"),
    CFG_INT("http_port", "LJ_HTTP_PORT", http_port, "8080", 0, 65535, CFG_PRODUCER,
            "HTTP listen port (0: any free port)"),
    CFG_INT("import_batch", "LJ_IMPORT_BATCH", import_batch, "500", 1, 1000, CFG_IMPORT,
            "CSV rows stored per transaction (each batch all or nothing)"),
    CFG_INT("initial_ratio_permille", "LJ_INITIAL_RATIO_PERMILLE", initial_ratio_permille, "0",
            0, 1000, CFG_PRODUCER,
            "stream traffic ratio (in 1/1000) used while Redis holds none"),
    CFG_INT("keepalive_ms", "LJ_KEEPALIVE_MS", keepalive_ms, "15000", 100, 3600000,
            CFG_PRODUCER, "idle keep-alive connections are closed after this long"),
    CFG_INT("legacy_group_ms", "LJ_LEGACY_GROUP_MS", legacy_group_ms, "1", 0, 1000,
            CFG_PRODUCER, "legacy path: a group commit waits at most this long after its "
            "first upload for more; 0: takes what is queued"),
    CFG_INT("legacy_group_records", "LJ_LEGACY_GROUP_RECORDS", legacy_group_records, "2000", 1,
            1000000, CFG_PRODUCER,
            "legacy path: a group commit closes at this many records (one upload may exceed it)"),
    CFG_INT("legacy_group_uploads", "LJ_LEGACY_GROUP_UPLOADS", legacy_group_uploads, "1000", 1,
            100000, CFG_PRODUCER, "legacy path: a group commit closes at this many uploads"),
    CFG_INT("legacy_queue", "LJ_LEGACY_QUEUE", legacy_queue, "4096", 1, 1000000, CFG_PRODUCER,
            "legacy path: uploads waiting for a writer at most; more get 503 at once"),
    CFG_INT("legacy_writers", "LJ_LEGACY_WRITERS", legacy_writers, "2", 1, 64, CFG_PRODUCER,
            "legacy path: writer threads, each with its own PostgreSQL connection"),
    CFG_STR("log_level", "LJ_LOG_LEVEL", log_level, "info", CFG_ANY, 0,
            "debug, info, warn or error"),
    CFG_INT("max_body_bytes", "LJ_MAX_BODY_BYTES", max_body_bytes, "1048576", 1, 1 << 30,
            CFG_PRODUCER, "largest request body (413 above)"),
    CFG_INT("max_connections", "LJ_MAX_CONNECTIONS", max_connections, "16384", 1, 1000000,
            CFG_PRODUCER, "open connections at most; more wait in the listen backlog"),
    CFG_INT("max_deliveries", "LJ_MAX_DELIVERIES", max_deliveries, "5", 1, 1000, CFG_CONSUMER,
            "an entry on which workers crashed this often is dead-lettered (outages never count)"),
    CFG_INT("max_depth", "LJ_MAX_DEPTH", max_depth, "32", 1, 1000, CFG_PRODUCER,
            "deepest JSON nesting (400 above)"),
    CFG_INT("max_inflight", "LJ_MAX_INFLIGHT", max_inflight, "4096", 0, 10000000, CFG_PRODUCER,
            "uploads waiting on Redis or PostgreSQL at once; more get 503 at once; 0: off"),
    CFG_INT("max_records", "LJ_MAX_RECORDS", max_records, "1000", 1, 1000000, CFG_PRODUCER,
            "most records in one upload (413 above)"),
    CFG_INT("max_unsent_bytes", "LJ_MAX_UNSENT_BYTES", max_unsent_bytes, "262144", 1024,
            1 << 30, CFG_PRODUCER,
            "a connection whose unsent answers exceed this is not read (nor its pipelined "
            "requests parsed) until they drain below it"),
    CFG_INT("notify_backoff_max_ms", "LJ_NOTIFY_BACKOFF_MAX_MS", notify_backoff_max_ms, "300000",
            10, 86400000, CFG_NOTIFIER, "longest wait between two attempts of a delivery"),
    CFG_INT("notify_backoff_ms", "LJ_NOTIFY_BACKOFF_MS", notify_backoff_ms, "1000", 10, 3600000,
            CFG_NOTIFIER, "wait before the first retry of a delivery; doubles each attempt "
            "(a Retry-After of up to an hour is honoured when longer)"),
    CFG_INT("notify_batch", "LJ_NOTIFY_BATCH", notify_batch, "20", 1, 1000, CFG_NOTIFIER,
            "alerts a notifier worker claims at once"),
    CFG_INT("notify_connect_timeout_ms", "LJ_NOTIFY_CONNECT_TIMEOUT_MS",
            notify_connect_timeout_ms, "3000", 10, 60000, CFG_NOTIFIER,
            "a delivery's resolve + connect (+ TLS handshake) must be done by then"),
    CFG_INT("notify_lease_ms", "LJ_NOTIFY_LEASE_MS", notify_lease_ms, "60000", 1000,
            86400000, CFG_NOTIFIER, "other notifiers leave a claimed alert alone this long after "
            "its claim is renewed (before each alert; so a notifier killed holding alerts delays "
            "them this long); must exceed channels x (timeout + connect timeout) + 10 s"),
    CFG_INT("notify_max_age_s", "LJ_NOTIFY_MAX_AGE_S", notify_max_age_s, "86400", 60,
            31536000, CFG_NOTIFIER, "an alert still undelivered this long after it was raised "
            "is EXPIRED, never sent"),
    CFG_INT("notify_max_attempts", "LJ_NOTIFY_MAX_ATTEMPTS", notify_max_attempts, "10", 1, 1000,
            CFG_NOTIFIER, "attempts of one delivery before it is a dead letter (scripts/alerts)"),
    CFG_INT("notify_poll_ms", "LJ_NOTIFY_POLL_MS", notify_poll_ms, "500", 10, 60000,
            CFG_NOTIFIER, "an idle notifier worker looks for new alerts this often"),
    CFG_INT("notify_status_port", "LJ_NOTIFY_STATUS_PORT", notify_status_port, "9120", -1,
            65535, CFG_NOTIFIER, "the notifier's status port (/health, /metrics); 0: any free "
            "port, -1: none"),
    CFG_INT("notify_suppress_s", "LJ_NOTIFY_SUPPRESS_S", notify_suppress_s, "300", 0, 86400,
            CFG_NOTIFIER, "an alert of the same device and type as one sent (or being sent) "
            "within this many seconds of it, and no more severe, is SUPPRESSED and counted; "
            "0: off"),
    CFG_INT("notify_timeout_ms", "LJ_NOTIFY_TIMEOUT_MS", notify_timeout_ms, "5000", 100, 600000,
            CFG_NOTIFIER, "whole-request bound of one delivery attempt"),
    CFG_INT("notify_workers", "LJ_NOTIFY_WORKERS", notify_workers, "1", 1, 64, CFG_NOTIFIER,
            "delivery threads, each with its own PostgreSQL connection"),
    CFG_INT("partition_new_months", "LJ_PARTITION_NEW_MONTHS", partition_new_months, "3", 1,
            1200, CFG_BOTH, "upload paths: monthly partitions one batch may ask to be created "
            "at most (each takes an EXCLUSIVE lock on t_user_health_data); the rest wait "
            "for later batches, their readings in the default partition meanwhile"),
    CFG_INT("partition_window_months", "LJ_PARTITION_WINDOW_MONTHS", partition_window_months,
            "24", 0, 1200, CFG_BOTH, "upload paths: monthly partitions are created only for "
            "the current month, this many before it and 3 after; older readings go to the "
            "default partition (ljwx-import may create any month)"),
    CFG_INT("pg_connect_timeout_s", "LJ_PG_CONNECT_TIMEOUT_S", pg_connect_timeout_s, "5", 1, 600,
            CFG_ANY, "PostgreSQL connect_timeout in s, unless the DSN sets it"),
    CFG_STR("pg_dsn", "LJ_PG_DSN", pg_dsn, "host=127.0.0.1 port=5432 dbname=ljwx user=ljwx",
            CFG_ANY, CFG_SECRET, "libpq connection string"),
    CFG_INT("pg_keepalives_count", "LJ_PG_KEEPALIVES_COUNT", pg_keepalives_count, "3", 1, 100,
            CFG_ANY, "unanswered TCP keepalives before the connection is dead (unless the "
            "DSN sets keepalives_count)"),
    CFG_INT("pg_keepalives_idle_s", "LJ_PG_KEEPALIVES_IDLE_S", pg_keepalives_idle_s, "30", 1,
            86400, CFG_ANY, "idle seconds before the first TCP keepalive (unless the DSN sets "
            "keepalives_idle)"),
    CFG_INT("pg_keepalives_interval_s", "LJ_PG_KEEPALIVES_INTERVAL_S", pg_keepalives_interval_s,
            "10", 1, 3600, CFG_ANY, "seconds between TCP keepalives (unless the DSN sets "
            "keepalives_interval)"),
    CFG_INT("pg_lock_timeout_ms", "LJ_PG_LOCK_TIMEOUT_MS", pg_lock_timeout_ms, "5000", 0,
            86400000, CFG_ANY, "server-side lock_timeout of our sessions; 0: not set (the "
            "server's); a -c lock_timeout in the DSN's options wins"),
    CFG_INT("pg_pooled", "LJ_PG_POOLED", pg_pooled, "0", 0, 1, CFG_ALL,
            "1: the DSN names a transaction pooler (PgBouncer pool_mode=transaction), which "
            "refuses startup 'options': statement_timeout and lock_timeout are then set with "
            "SET LOCAL in each transaction instead (docs/operations.md, Connection pooling)"),
    CFG_INT("pg_reply_timeout_ms", "LJ_PG_REPLY_TIMEOUT_MS", pg_reply_timeout_ms, "15000", 100,
            86400000, CFG_ANY, "client-side bound on each PostgreSQL call: no reply by then "
            "drops the connection (a hung server cannot enforce statement_timeout)"),
    CFG_INT("pg_statement_timeout_ms", "LJ_PG_STATEMENT_TIMEOUT_MS", pg_statement_timeout_ms,
            "10000", 0, 86400000, CFG_ANY, "server-side statement_timeout of our sessions; 0: "
            "not set (the server's); a -c statement_timeout in the DSN's options wins"),
    CFG_INT("pg_tcp_user_timeout_ms", "LJ_PG_TCP_USER_TIMEOUT_MS", pg_tcp_user_timeout_ms,
            "30000", 0, 3600000, CFG_ANY, "TCP_USER_TIMEOUT of PostgreSQL connections (unsent "
            "data unacknowledged this long: dead); 0: the kernel's; the DSN's wins"),
    CFG_INT("pool_threads", "LJ_POOL_THREADS", pool_threads, "4", 1, 128, CFG_PRODUCER,
            "threads for PostgreSQL ops work (audit, stats, trace, health)"),
    CFG_INT("pool_request_timeout_ms", "LJ_POOL_REQUEST_TIMEOUT_MS", pool_request_timeout_ms,
            "10000", 100, 600000, CFG_PRODUCER,
            "a request waiting on PostgreSQL work (legacy write, /api/stats, trace) is answered "
            "503 with Retry-After after this long; counts as a PostgreSQL failure"),
    CFG_INT("rate_table_slots", "LJ_RATE_TABLE_SLOTS", rate_table_slots, "262144", 64,
            67108864, CFG_PRODUCER,
            "devices (and addresses) whose rate is tracked at once, 16 bytes each; idle "
            "ones are evicted first"),
    CFG_INT("ratio_refresh_ms", "LJ_RATIO_REFRESH_MS", ratio_refresh_ms, "500", 50, 60000,
            CFG_PRODUCER, "how often each producer re-reads the traffic ratio from Redis"),
    CFG_INT("read_ahead", "LJ_READ_AHEAD", read_ahead, "1", 0, 1, CFG_CONSUMER,
            "1: each worker reads and decodes its next batch of new entries while it stores "
            "the current one (one more Redis connection a worker); 0: one at a time"),
    CFG_STR("redis_cluster", "LJ_REDIS_CLUSTER", redis_cluster, "", CFG_BOTH, 0,
            "seed nodes host:port,... of a Redis Cluster (commands go to the master of their "
            "slot); empty: one Redis at --redis-host:--redis-port"),
    CFG_INT("redis_connect_ms", "LJ_REDIS_CONNECT_MS", redis_connect_ms, "2000", 50, 60000,
            CFG_BOTH,
            "a Redis connect not complete after this is abandoned and retried with backoff"),
    CFG_STR("redis_host", "LJ_REDIS_HOST", redis_host, "127.0.0.1", CFG_BOTH, 0,
            "Redis host: an address, or a name resolved again at each connect"),
    CFG_STR("redis_password", "LJ_REDIS_PASSWORD", redis_password, "", CFG_BOTH, CFG_SECRET,
            "Redis password (AUTH); empty: none"),
    CFG_INT("redis_port", "LJ_REDIS_PORT", redis_port, "6379", 1, 65535, CFG_BOTH,
            "Redis port"),
    CFG_INT("redis_timeout_ms", "LJ_REDIS_TIMEOUT_MS", redis_timeout_ms, "2000", 50, 60000,
            CFG_PRODUCER, "a Redis reply later than this drops the link (503 or fallback)"),
    CFG_INT("redis_wait_replicas", "LJ_REDIS_WAIT_REPLICAS", redis_wait_replicas, "0", 0, 16,
            CFG_PRODUCER, "an upload is answered 200 only after WAIT confirms its entry on "
            "this many replicas of its master (else 503 with Retry-After; WAIT's timeout is "
            "half --redis-timeout-ms); 0: no WAIT, a failover may lose the last entries"),
    CFG_INT("send_timeout_ms", "LJ_SEND_TIMEOUT_MS", send_timeout_ms, "10000", 100, 600000,
            CFG_PRODUCER,
            "a connection whose unsent answers stay above --max-unsent-bytes this long is "
            "closed"),
    CFG_STR("retention_archive_dir", "LJ_RETENTION_ARCHIVE_DIR", retention_archive_dir, "",
            CFG_CONSUMER, 0, "retention: each partition is first copied to a file in this "
            "folder (COPY text, fsynced, its SHA-256 audited); a failed archive drops nothing; "
            "empty: no archive"),
    CFG_INT("retention_months", "LJ_RETENTION_MONTHS", retention_months, "0", 0, 1200,
            CFG_CONSUMER, "the current UTC month and this many before it are kept; older "
            "monthly health partitions are detached and dropped (hourly, audited); 0 or at "
            "least --partition-window-months; 0: keep everything"),
    CFG_INT("shutdown_timeout_ms", "LJ_SHUTDOWN_TIMEOUT_MS", shutdown_timeout_ms, "10000", 0,
            600000, CFG_PRODUCER, "on SIGTERM, requests in flight are answered for this long; "
            "then 503 and exit"),
    CFG_INT("stale_consumer_ms", "LJ_STALE_CONSUMER_MS", stale_consumer_ms, "3600000", 1000,
            604800000, CFG_CONSUMER,
            "consumers idle this long with nothing pending are removed from the group"),
    CFG_INT("stats_cache_ms", "LJ_STATS_CACHE_MS", stats_cache_ms, "3000", 0, 600000,
            CFG_PRODUCER, "/api/stats runs at most one query at a time and answers from its last "
            "result for this long"),
    CFG_STR("status_host", "LJ_STATUS_HOST", status_host, "127.0.0.1",
            CFG_CONSUMER | CFG_NOTIFIER, 0,
            "address of the status port (/health, /metrics)"),
    CFG_INT("status_port", "LJ_STATUS_PORT", status_port, "9101", -1, 65535, CFG_CONSUMER,
            "status port; 0: any free port, -1: none"),
    CFG_INT("stream_high_watermark", "LJ_STREAM_HIGH_WATERMARK", stream_high_watermark,
            "500000", 1, 1000000000, CFG_PRODUCER,
            "stream length at which uploads get 503 (or the legacy path) instead of an XADD"),
    CFG_STR("serve_shards", "LJ_SERVE_SHARDS", serve_shards, "", CFG_CONSUMER, 0,
            "the stream shards this process serves, K and K-L comma-separated (\"0,3\"), e.g. "
            "the shards of one database shard; empty: every shard (docs/scaling.md)"),
    CFG_INT("stream_shards", "LJ_STREAM_SHARDS", stream_shards, "1", 1, 256, CFG_BOTH,
            "shards of every stream (<stream>:{k}): the producer adds each upload to the shard "
            "of its device serial; the consumer reads each shard with worker threads of its "
            "own; 1: the plain names"),
    CFG_STR("stream_prefix", "LJ_STREAM_PREFIX", stream_prefix, "", CFG_BOTH, 0,
            "prefix of every stream and group name (several environments on one Redis)"),
    CFG_STR("timezone", "LJ_TIMEZONE", timezone, "", CFG_PRODUCER, 0,
            "IANA time zone of the fleet (e.g. Asia/Shanghai): /api/stats counts rows created "
            "since its midnight; empty: the system's (TZ, /etc/timezone, /etc/localtime, else "
            "UTC); an unknown name is refused at start"),
    CFG_INT("tz_offset_min", "LJ_TZ_OFFSET_MIN", tz_offset_min, "0", -840, 840, CFG_ALL,
            "offset from UTC, in minutes, of \"YYYY-MM-DD HH:MM:SS\" device timestamps"),
    CFG_INT("threads", "LJ_THREADS", threads, "1", 1, 64, CFG_PRODUCER,
            "event loops, each with its own listener (SO_REUSEPORT) and Redis connection"),
    CFG_INT("upkeep_interval_ms", "LJ_UPKEEP_INTERVAL_MS", upkeep_interval_ms, "5000", 100,
            3600000, CFG_CONSUMER,
            "how often a worker claims idle entries, trims acknowledged ones and reads lag"),
    CFG_STR("web_dir", "LJ_WEB_DIR", web_dir, "web/dashboard", CFG_PRODUCER, 0,
            "folder of the dashboard's index.html, dashboard.js and dashboard.css "
            "(read at start)"),
    CFG_INT("workers", "LJ_WORKERS", workers, "1", 1, 256, CFG_CONSUMER,
            "worker threads for the health stream"),
};

#define N_OPTIONS (sizeof(options) / sizeof(options[0]))

static int set_value(lj_config *c, const cfg_option *o, const char *v, char *err, size_t errlen)
{
    char *p = (char *)c + o->offset;
    char *end;
    long n;

    if (o->type == CFG_T_STR) {
        if (strlen(v) >= o->size) {
            snprintf(err, errlen, "%s: value longer than %zu bytes", o->name, o->size - 1);
            return LJ_EINVAL;
        }
        memcpy(p, v, strlen(v) + 1);
        return 0;
    }
    errno = 0;
    n = strtol(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || n < o->min || n > o->max) {
        snprintf(err, errlen, "%s: expected an integer in %ld..%ld", o->name, o->min, o->max);
        return LJ_EINVAL;
    }
    *(int *)(void *)p = (int)n;
    return 0;
}

/* Matches "--http-port" (or "--http_port") against option 'name'. */
static int flag_matches(const char *flag, size_t flen, const char *name)
{
    size_t i;

    if (strlen(name) != flen)
        return 0;
    for (i = 0; i < flen; i++) {
        char f = flag[i] == '-' ? '_' : flag[i];
        if (f != name[i])
            return 0;
    }
    return 1;
}

static const cfg_option *find_flag(const char *flag, size_t flen, unsigned prog)
{
    size_t i;

    for (i = 0; i < N_OPTIONS; i++)
        if ((options[i].progs & prog) && flag_matches(flag, flen, options[i].name))
            return &options[i];
    return NULL;
}

static int load_args(lj_config *c, unsigned prog, int argc, char **argv, char *err,
                     size_t errlen)
{
    int i;

    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *eq;
        const char *val;
        const cfg_option *o;
        size_t flen;
        int rc;

        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            return 1;
        if (strncmp(a, "--", 2) != 0) {
            snprintf(err, errlen, "unexpected argument '%s' (see --help)", a);
            return LJ_EINVAL;
        }
        a += 2;
        eq = strchr(a, '=');
        flen = eq ? (size_t)(eq - a) : strlen(a);
        if ((o = find_flag(a, flen, prog)) == NULL) {
            snprintf(err, errlen, "unknown option '--%.*s' (see --help)", (int)flen, a);
            return LJ_EINVAL;
        }
        if (eq) {
            val = eq + 1;
        } else if (i + 1 < argc) {
            val = argv[++i];
        } else {
            snprintf(err, errlen, "option '--%s' needs a value", a);
            return LJ_EINVAL;
        }
        if ((rc = set_value(c, o, val, err, errlen)) != 0)
            return rc;
    }
    return 0;
}

/* Nonzero when 's' is a well-formed zone name: parts of [A-Za-z0-9_+-],
 * none empty or starting with '.' or '-', between single '/'. */
static int zone_name_ok(const char *s)
{
    size_t part = 0;

    if (*s == '\0' || strlen(s) >= sizeof(((lj_config *)0)->timezone))
        return 0;
    for (; *s; s++) {
        char ch = *s;

        if (ch == '/') {
            if (part == 0)
                return 0;
            part = 0;
            continue;
        }
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '+' || (ch == '-' && part > 0)))
            return 0;
        part++;
    }
    return part > 0;
}

int cfg_timezone_known(const char *name)
{
    const char *dir = getenv("TZDIR");
    char path[512];
    char magic[4];
    FILE *f;
    int ok;

    if (strcmp(name, "UTC") == 0)
        return 1;
    if (!zone_name_ok(name))
        return 0;
    snprintf(path, sizeof(path), "%s/%s", dir && *dir ? dir : "/usr/share/zoneinfo", name);
    if ((f = fopen(path, "rb")) == NULL)
        return 0;
    ok = fread(magic, 1, sizeof(magic), f) == sizeof(magic) && memcmp(magic, "TZif", 4) == 0;
    fclose(f);
    return ok;
}

/* Copies the zone 's' names into 'out' when known: 1, else 0. */
static int take_zone(const char *s, char *out, size_t outlen)
{
    const char *z;
    char name[128];
    size_t n;

    if (s == NULL)
        return 0;
    s += *s == ':';
    for (z = s; (z = strstr(z, "zoneinfo/")) != NULL; s = z += strlen("zoneinfo/"))
        ;
    n = strcspn(s, " \t\r\n");
    if (n == 0 || n >= sizeof(name))
        return 0;
    memcpy(name, s, n);
    name[n] = '\0';
    if (!cfg_timezone_known(name) || n >= outlen)
        return 0;
    memcpy(out, name, n + 1);
    return 1;
}

void cfg_system_timezone(char *out, size_t outlen, const char *tz_env, const char *etc_timezone,
                         const char *localtime_link)
{
    char line[256] = "";
    char target[512];
    ssize_t n;
    FILE *f;

    if (take_zone(tz_env, out, outlen))
        return;
    if (etc_timezone && (f = fopen(etc_timezone, "r")) != NULL) {
        int got = fgets(line, sizeof(line), f) != NULL;

        fclose(f);
        if (got && take_zone(line, out, outlen))
            return;
    }
    if (localtime_link && (n = readlink(localtime_link, target, sizeof(target) - 1)) > 0) {
        target[n] = '\0';
        if (strstr(target, "zoneinfo/") && take_zone(target, out, outlen))
            return;
    }
    snprintf(out, outlen, "UTC");
}

/* The producer's time zone: checked when given, the system's when not. */
static int resolve_timezone(lj_config *c, char *err, size_t errlen)
{
    if (c->timezone[0] == '\0') {
        cfg_system_timezone(c->timezone, sizeof(c->timezone), getenv("TZ"), "/etc/timezone",
                            "/etc/localtime");
        return 0;
    }
    if (cfg_timezone_known(c->timezone))
        return 0;
    snprintf(err, errlen, "timezone: unknown time zone '%s' (an IANA name such as Asia/Shanghai, "
                          "as in /usr/share/zoneinfo)", c->timezone);
    return LJ_EINVAL;
}

/* Retention never reaches into the months the upload paths may create. */
static int check_retention(const lj_config *c, char *err, size_t errlen)
{
    if (c->retention_months == 0 || c->retention_months >= c->partition_window_months)
        return 0;
    snprintf(err, errlen, "retention_months: %d is inside the partition window "
                          "(--partition-window-months %d): 0 (off) or at least %d",
             c->retention_months, c->partition_window_months, c->partition_window_months);
    return LJ_EINVAL;
}

int cfg_load(lj_config *c, unsigned prog, int argc, char **argv, char *err, size_t errlen)
{
    size_t i;
    int rc;

    memset(c, 0, sizeof(*c));
    for (i = 0; i < N_OPTIONS; i++) {
        const char *env = getenv(options[i].env);

        if ((rc = set_value(c, &options[i], options[i].def, err, errlen)) != 0)
            return rc;
        if (env && (options[i].progs & prog) &&
            (rc = set_value(c, &options[i], env, err, errlen)) != 0)
            return rc;
    }
    if ((rc = load_args(c, prog, argc, argv, err, errlen)) != 0)
        return rc;
    if ((prog & CFG_CONSUMER) && (rc = check_retention(c, err, errlen)) != 0)
        return rc;
    return (prog & CFG_PRODUCER) ? resolve_timezone(c, err, errlen) : 0;
}

static int by_name(const void *a, const void *b)
{
    return strcmp((*(const cfg_option *const *)a)->name, (*(const cfg_option *const *)b)->name);
}

void cfg_print_help(FILE *out, unsigned prog, const char *progname)
{
    const cfg_option *shown[N_OPTIONS];
    int flag_w = 0;
    int env_w = 0;
    size_t n = 0;
    size_t i;

    for (i = 0; i < N_OPTIONS; i++) {
        if (!(options[i].progs & prog))
            continue;
        shown[n++] = &options[i];
        if ((int)strlen(options[i].name) + 2 > flag_w)
            flag_w = (int)strlen(options[i].name) + 2;
        if ((int)strlen(options[i].env) > env_w)
            env_w = (int)strlen(options[i].env);
    }
    qsort(shown, n, sizeof(shown[0]), by_name);
    fprintf(out, "usage: %s [--option value | --option=value]...\n\n"
                 "Every option may also be set by its environment variable; flags win.\n\n",
            progname);
    for (i = 0; i < n; i++) {
        const cfg_option *o = shown[i];
        char flag[64];
        size_t j;

        snprintf(flag, sizeof(flag), "--%s", o->name);
        for (j = 2; flag[j]; j++)
            if (flag[j] == '_')
                flag[j] = '-';
        fprintf(out, "  %-*s  %-*s  %s\n", flag_w, flag, env_w, o->env, o->help);
        if (o->flags & CFG_SECRET)
            fprintf(out, "  %-*s  %-*s  (secret: default not shown)\n", flag_w, "", env_w, "");
        else
            fprintf(out, "  %-*s  %-*s  default: \"%s\"\n", flag_w, "", env_w, "", o->def);
    }
}
