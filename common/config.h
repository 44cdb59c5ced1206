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
#define CFG_BOTH (CFG_PRODUCER | CFG_CONSUMER)

typedef struct lj_config {
    /* shared */
    char log_level[16];
    char redis_host[256];
    int redis_port;
    char redis_password[256];
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
    int pg_reply_timeout_ms;
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
    char status_host[64];
    int status_port;
    int device_workers;
    int event_workers;
    int max_deliveries;
    int dead_stream_maxlen;
    int claim_idle_ms;
    int upkeep_interval_ms;
    int stale_consumer_ms;
} lj_config;

/* Fills 'c' for program 'prog' (CFG_PRODUCER or CFG_CONSUMER) from the
 * defaults, the environment and 'argv'. Returns 0; 1 when --help was asked
 * for (the help is printed to stdout, the caller exits 0); LJ_EINVAL with a
 * message in 'err' for an unknown flag or a bad or out-of-range value. */
int cfg_load(lj_config *c, unsigned prog, int argc, char **argv, char *err, size_t errlen);

/* Prints the usage and every setting of 'prog' with its env var and default. */
void cfg_print_help(FILE *out, unsigned prog, const char *progname);

#endif
