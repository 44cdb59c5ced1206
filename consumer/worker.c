#include "worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <libpq-fe.h>

#include "batch.h"
#include "enrich.h"
#include "err.h"
#include "log.h"
#include "pg.h"
#include "rds.h"
#include "store.h"
#include "streams.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

/* What a worker holds while it runs. */
typedef struct session {
    worker *w;
    redisContext *redis;
    PGconn *pg;
    char stream[STREAM_NAME_MAX];
    char group[STREAM_NAME_MAX];
    char alert_stream[STREAM_NAME_MAX];
    char next_id[BATCH_ID_MAX];     /* "0"-based while re-reading pending, then ">" */
    unsigned backoff_ms;
    enrich_cache *owners;
} session;

void worker_init(worker *w, int index, const lj_config *cfg, const atomic_int *stop)
{
    char host[64];

    memset(w, 0, sizeof(*w));
    w->index = index;
    w->cfg = cfg;
    w->stop = stop;
    if (gethostname(host, sizeof(host)) != 0)
        snprintf(host, sizeof(host), "localhost");
    host[sizeof(host) - 1] = '\0';
    snprintf(w->name, sizeof(w->name), "%s:%d:%d", host, (int)getpid(), index);
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

/* Sleeps the current backoff in short steps (so a stop is seen) and grows it. */
static void back_off(session *s)
{
    unsigned slept;

    for (slept = 0; slept < s->backoff_ms && !atomic_load(s->w->stop); slept += 50)
        sleep_ms(50);
    s->backoff_ms = s->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : s->backoff_ms * 2;
}

static void drop_redis(session *s)
{
    if (s->redis)
        redisFree(s->redis);
    s->redis = NULL;
    atomic_store(&s->w->stats.redis_up, 0);
}

static void drop_pg(session *s)
{
    if (s->pg)
        PQfinish(s->pg);
    s->pg = NULL;
    atomic_store(&s->w->stats.pg_up, 0);
}

/* Connects what is missing. After a reconnect the worker re-reads its own
 * pending entries first: they may be a batch it never acknowledged. */
static int ensure_connected(session *s)
{
    const lj_config *cfg = s->w->cfg;
    char err[256];

    if (s->redis == NULL) {
        /* Command timeout above BLOCK, so a blocked read is not cut short. */
        s->redis = rds_connect(cfg->redis_host, cfg->redis_port, cfg->redis_password,
                               cfg->block_ms + 5000, err, sizeof(err));
        if (s->redis == NULL) {
            log_warn("worker", "redis %s:%d: %s", cfg->redis_host, cfg->redis_port, err);
            return LJ_EUNAVAIL;
        }
        if (rds_group_create(s->redis, s->stream, s->group) != 0) {
            drop_redis(s);
            return LJ_EUNAVAIL;
        }
        snprintf(s->next_id, sizeof(s->next_id), "0");
        atomic_store(&s->w->stats.redis_up, 1);
    }
    if (s->pg == NULL) {
        if ((s->pg = pg_connect(cfg->pg_dsn, s->w->name, err, sizeof(err))) == NULL) {
            log_warn("worker", "postgresql: %s", err);
            return LJ_EUNAVAIL;
        }
        if (store_prepare(s->pg) != 0) {
            drop_pg(s);
            return LJ_EUNAVAIL;
        }
        snprintf(s->next_id, sizeof(s->next_id), "0");
        atomic_store(&s->w->stats.pg_up, 1);
    }
    return 0;
}

static redisReply *read_batch(session *s)
{
    char count[16];
    char block[16];
    const char *argv[] = {"XREADGROUP", "GROUP", s->group, s->w->name, "COUNT", count,
                          "BLOCK", block, "STREAMS", s->stream, s->next_id};

    snprintf(count, sizeof(count), "%d", s->w->cfg->batch_size);
    snprintf(block, sizeof(block), "%d", s->w->cfg->block_ms);
    return rds_command(s->redis, 11, argv);
}

/* XACK every entry of 'b' in one command. */
static int ack_batch(session *s, const batch *b)
{
    const char **argv = malloc((b->n + 3) * sizeof(*argv));
    redisReply *r;
    size_t i;
    int rc = 0;

    if (argv == NULL)
        return LJ_ENOMEM;
    argv[0] = "XACK";
    argv[1] = s->stream;
    argv[2] = s->group;
    for (i = 0; i < b->n; i++)
        argv[i + 3] = b->entries[i].id;
    r = rds_command(s->redis, (int)(b->n + 3), argv);
    free(argv);
    if (r == NULL || r->type != REDIS_REPLY_INTEGER) {
        log_warn("worker", "XACK failed stream=%s n=%zu: %s", s->stream, b->n,
                 r ? (r->type == REDIS_REPLY_ERROR ? r->str : "bad reply") : s->redis->errstr);
        rc = r ? LJ_EREDIS : LJ_EUNAVAIL;
    } else {
        atomic_fetch_add(&s->w->stats.entries_acked, (unsigned long long)r->integer);
    }
    if (r)
        freeReplyObject(r);
    return rc;
}

/* Tells notifiers about the alerts of a committed batch. A failure here is
 * logged, not retried: the alerts are already in t_alert_info. */
static void publish_alerts(session *s, const store_stats *st)
{
    size_t i;

    for (i = 0; i < st->nalerts; i++) {
        const store_alert *a = &st->alerts[i];
        char id[24];
        char user[24];
        char value[32];
        const char *argv[] = {"XADD", s->alert_stream, "*", "alert_id", id, "device_sn",
                              a->device_sn, "user_id", user, "alert_type", a->alert_type,
                              "value", value, "level", a->level, "time", a->time};
        redisReply *r;

        snprintf(id, sizeof(id), "%lld", (long long)a->id);
        snprintf(user, sizeof(user), "%lld", (long long)a->user_id);
        snprintf(value, sizeof(value), "%.15g", a->value);
        r = rds_command(s->redis, (int)(sizeof(argv) / sizeof(argv[0])), argv);
        if (r == NULL || r->type == REDIS_REPLY_ERROR)
            log_warn("worker", "alert not published alert_id=%s device=%s", id, a->device_sn);
        if (r)
            freeReplyObject(r);
    }
}

static void log_unreadable(session *s, const batch *b)
{
    size_t i;

    for (i = 0; i < b->n; i++) {
        if (b->entries[i].ok)
            continue;
        atomic_fetch_add(&s->w->stats.entries_unreadable, 1);
        log_error("worker", "unreadable entry stream=%s id=%s reason=\"%s\"", s->stream,
                  b->entries[i].id, b->entries[i].reason);
    }
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

static void count_batch(worker_stats *ws, const store_stats *st, const struct timespec *t0)
{
    atomic_fetch_add(&ws->batches, 1);
    atomic_fetch_add(&ws->rows_inserted, st->inserted);
    atomic_fetch_add(&ws->duplicates_skipped, st->duplicates);
    atomic_fetch_add(&ws->unbound_records, st->unbound);
    atomic_fetch_add(&ws->alerts_raised, st->nalerts);
    metrics_hist_observe(&ws->batch_seconds, seconds_since(t0));
}

/* Stores and acknowledges one batch. An entry that cannot be read is
 * acknowledged without storing: keeping it pending would block nothing
 * (reads move past it) but would be redelivered forever. */
static int process_batch(session *s, const batch *b, const struct timespec *t0)
{
    store_item *items = malloc(b->n * sizeof(*items));
    store_stats st = {0};
    size_t n;
    int rc;

    if (items == NULL)
        return LJ_ENOMEM;
    n = batch_store_items(b, items);
    log_unreadable(s, b);
    rc = n ? store_health_batch(s->pg, s->owners, items, n, "stream_v2", &st) : 0;
    free(items);
    if (rc != 0)
        return rc;
    publish_alerts(s, &st);
    /* Not acknowledged: stays pending, and its redelivery is skipped as duplicates. */
    if ((rc = ack_batch(s, b)) == 0) {
        count_batch(&s->w->stats, &st, t0);
        log_debug("worker", "committed stream=%s entries=%zu rows=%zu duplicates=%zu",
                  s->stream, b->n, st.inserted, st.duplicates);
    }
    store_stats_cleanup(&st);
    return rc;
}

/* One XREADGROUP and what follows. Returns 0 or the error that needs a
 * reconnect or a backoff. */
static int step(session *s)
{
    redisReply *r = read_batch(s);
    struct timespec t0;
    batch b;
    int rc;

    clock_gettime(CLOCK_MONOTONIC, &t0);    /* the batch's time starts when it arrives */
    if (r == NULL) {
        log_warn("worker", "XREADGROUP failed: %s", s->redis->errstr);
        drop_redis(s);
        return LJ_EUNAVAIL;
    }
    batch_init(&b);
    if (r->type == REDIS_REPLY_ERROR) {
        log_warn("worker", "XREADGROUP refused: %s", r->str);
        drop_redis(s);  /* e.g. NOGROUP after a flush: recreate on reconnect */
        rc = LJ_EREDIS;
        goto out;
    }
    if ((rc = batch_from_reply(r, &b)) != 0) {
        log_error("worker", "unexpected XREADGROUP reply shape");
        goto out;
    }
    if (strcmp(s->next_id, ">") != 0) {
        /* Re-reading our pending entries: continue after the last one, and
         * switch to new entries once none are left. */
        if (b.n == 0)
            snprintf(s->next_id, sizeof(s->next_id), ">");
        else
            snprintf(s->next_id, sizeof(s->next_id), "%s", b.entries[b.n - 1].id);
    }
    if (b.n > 0 && (rc = process_batch(s, &b, &t0)) != 0) {
        atomic_fetch_add(&s->w->stats.retries, 1);
        snprintf(s->next_id, sizeof(s->next_id), "0");     /* retry from our pending */
        if (rc == LJ_EUNAVAIL && s->pg && PQstatus(s->pg) != CONNECTION_OK)
            drop_pg(s);
    }
out:
    batch_cleanup(&b);
    freeReplyObject(r);
    return rc;
}

int worker_run(worker *w)
{
    session s;

    memset(&s, 0, sizeof(s));
    s.w = w;
    s.backoff_ms = BACKOFF_MIN_MS;
    stream_name(s.stream, sizeof(s.stream), w->cfg->stream_prefix, STREAM_HEALTH);
    stream_group(s.group, sizeof(s.group), w->cfg->stream_prefix, STREAM_HEALTH);
    snprintf(s.alert_stream, sizeof(s.alert_stream), "%salert_stream", w->cfg->stream_prefix);
    if ((s.owners = enrich_new(65536, w->cfg->enrich_ttl_ms)) == NULL) {
        log_error("worker", "out of memory");
        return LJ_ENOMEM;
    }
    snprintf(s.next_id, sizeof(s.next_id), "0");
    log_info("worker", "started consumer=%s stream=%s group=%s", w->name, s.stream, s.group);
    while (!atomic_load(w->stop)) {
        if (ensure_connected(&s) != 0 || step(&s) != 0) {
            back_off(&s);
            continue;
        }
        s.backoff_ms = BACKOFF_MIN_MS;
    }
    drop_redis(&s);
    drop_pg(&s);
    enrich_free(s.owners);
    log_info("worker", "stopped consumer=%s", w->name);
    return 0;
}

void *worker_thread(void *arg)
{
    worker_run(arg);
    return NULL;
}
