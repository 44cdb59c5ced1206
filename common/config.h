/* config.h -- configuration from defaults, environment and flags.
 *
 * One table in config.c describes every setting: its flag (--http-port), its
 * environment variable (LJ_HTTP_PORT), its default and its help line. Later
 * sources win: default < environment < command line. --help is printed from
 * the same table, so the documentation cannot drift from the code. Secrets
 * (CFG_SECRET) never have their value printed.
 *
 * Loaded once at start, before any thread exists; read-only afterwards.
 */
#ifndef LJ_COMMON_CONFIG_H
#define LJ_COMMON_CONFIG_H

#include <stddef.h>
#include <stdio.h>

/* Which program a setting belongs to. */
#define CFG_PRODUCER 1u
#define CFG_CONSUMER 2u
#define CFG_IMPORT 4u     /* ljwx-import (scripts/import) */
#define CFG_NOTIFIER 8u   /* ljwx-notifier (alert delivery) */
#define CFG_BOTH (CFG_PRODUCER | CFG_CONSUMER)
#define CFG_ALL (CFG_BOTH | CFG_IMPORT)

typedef struct lj_config {
    /* shared */
    char log_level[16];
    char redis_host[256];
    int redis_port;
    char redis_password[256];
    char redis_cluster[512];    /* seeds "host:port,..."; "": one Redis */
    int stream_shards;
    char serve_shards[256];     /* consumer: "" every shard, else "0,3", "2-5" */
    char pg_dsn[1024];
    char stream_prefix[64];
    int tz_offset_min;
    int enrich_ttl_ms;
    int alert_stream_maxlen;
    int pg_connect_timeout_s;   /* PostgreSQL deadlines (pg.h) */
    int pg_keepalives_idle_s;
    int pg_keepalives_interval_s;
    int pg_keepalives_count;
    int pg_tcp_user_timeout_ms;
    int pg_statement_timeout_ms;
    int pg_lock_timeout_ms;
    int partition_window_months; /* partitions the upload paths may create (partition.h) */
    int partition_new_months;
    int pg_reply_timeout_ms;
    int pg_pooled;              /* 1: behind a transaction pooler (pg.h) */
    /* producer */
    char http_host[64];
    int http_port;
    int max_body_bytes;
    int max_records;
    int max_depth;
    char admin_token[256];
    int pool_threads;
    int max_connections;
    int max_unsent_bytes;
    int send_timeout_ms;
    int header_timeout_ms;
    int body_timeout_ms;
    int keepalive_ms;
    int stream_high_watermark;
    int threads;
    int redis_timeout_ms;
    int redis_wait_replicas;    /* WAIT n after each XADD; 0: none */
    int redis_connect_ms;   /* resolve + TCP connect, async and sync */
    int initial_ratio_permille;
    int ratio_refresh_ms;
    int device_rate;            /* flow control (flowctl.c) */
    int device_burst;
    int addr_rate;
    int addr_burst;
    int rate_table_slots;
    int max_inflight;
    int breaker_failures;
    int breaker_cooldown_ms;
    int breaker_max_cooldown_ms;
    int pool_request_timeout_ms; /* deadlines of requests waiting on the pool */
    int health_timeout_ms;
    int stats_cache_ms;
    char timezone[64];          /* the fleet's IANA zone: /api/stats "today"; never "" once loaded */
    int shutdown_timeout_ms;
    int legacy_writers;         /* legacy path (legacy.c) */
    int legacy_group_ms;
    int legacy_group_records;
    int legacy_group_uploads;
    int legacy_queue;
    char web_dir[512];          /* dashboard (dashboard.c) */
    char chartjs_path[512];
    /* consumer */
    int workers;
    int batch_size;             /* the ceiling of adaptive batches (batchsize.h) */
    int batch_min;
    int batch_adaptive;
    int batch_target_ms;
    int block_ms;
    int read_ahead;             /* readahead.h */
    char status_host[64];
    int status_port;
    int device_workers;
    int event_workers;
    int max_deliveries;
    int dead_stream_maxlen;
    int claim_idle_ms;
    int upkeep_interval_ms;
    int stale_consumer_ms;
    int retention_months;       /* retention (consumer/retention.h); 0: off */
    char retention_archive_dir[512];    /* "": drop without an archive */
    /* import */
    char import_file[512];
    int import_batch;
    /* notifier (docs/alerts.md) */
    char alert_webhook_url[2048];   /* comma-separated */
    char alert_wechat_url[1024];
    char alert_dingtalk_url[1024];
    char alert_sms_url[1024];
    char alert_sms_template[2048];
    char alert_sms_content_type[64];
    int notify_workers;
    int notify_batch;
    int notify_poll_ms;
    int notify_timeout_ms;
    int notify_connect_timeout_ms;
    int notify_max_attempts;
    int notify_backoff_ms;
    int notify_backoff_max_ms;
    int notify_lease_ms;
    int notify_suppress_s;
    int notify_max_age_s;
    int notify_status_port;
} lj_config;

/* Fills 'c' for program 'prog' (CFG_PRODUCER, CFG_CONSUMER, CFG_IMPORT or CFG_NOTIFIER) from the
 * defaults, the environment and 'argv'. Returns 0; 1 when --help was asked
 * for (the help is printed to stdout, the caller exits 0); LJ_EINVAL with a
 * message in 'err' for an unknown flag or a bad or out-of-range value, or
 * (consumer) a --retention-months other than 0 below --partition-window-months
 * (retention would drop months the upload paths still create). */
int cfg_load(lj_config *c, unsigned prog, int argc, char **argv, char *err, size_t errlen);

/* The producer's --timezone: given, it must be a zone cfg_timezone_known()
 * knows (else LJ_EINVAL, naming it); empty, cfg_load() fills in the
 * system's zone, from cfg_system_timezone(TZ, /etc/timezone, /etc/localtime). */

/* Nonzero when 'name' is "UTC" or an IANA zone name (letters, digits, '_',
 * '+', '-', '/' between parts; no ".." or leading '/') whose TZif file is
 * in $TZDIR or /usr/share/zoneinfo. */
int cfg_timezone_known(const char *name);

/* Writes the first known zone of: 'tz_env' (the TZ variable; a leading ':'
 * and a path up to "zoneinfo/" are dropped), the first line of the file
 * 'etc_timezone', the target of the symlink 'localtime_link' after
 * "zoneinfo/"; else "UTC". NULL or missing sources are passed over, as is
 * a TZ that names no zone file (a POSIX rule such as "CST-8"). */
void cfg_system_timezone(char *out, size_t outlen, const char *tz_env, const char *etc_timezone,
                         const char *localtime_link);

/* Prints the usage and every setting of 'prog' with its env var and default. */
void cfg_print_help(FILE *out, unsigned prog, const char *progname);

#endif
