#include "loop.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "claim.h"
#include "err.h"
#include "handle.h"
#include "kinds.h"
#include "log.h"
#include "pg.h"
#include "rds.h"
#include "session.h"
#include "settle.h"
#include "upkeep.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define ENRICH_CACHE_DEVICES 65536

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
    rconn_close(s->redis);
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

/* Creates the stream's consumer group at ID 0, and the stream too
 * (MKSTREAM). An existing group is fine. 0 or LJ_EUNAVAIL. */
static int create_group(session *s)
{
    const char *argv[] = {"XGROUP", "CREATE", s->stream, s->group, "0", "MKSTREAM"};
    redisReply *r = session_command(s, 6, argv);
    int rc = 0;

    if (r == NULL)
        return LJ_EUNAVAIL;
    if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "BUSYGROUP", 9) != 0) {
        log_error("worker", "XGROUP CREATE %s %s: %s", s->stream, s->group, r->str);
        rc = LJ_EUNAVAIL;
    }
    freeReplyObject(r);
    return rc;
}

static int connect_redis(session *s)
{
    rconn_opts o;
    char err[256];

    worker_redis_opts(s->w, &o);
    if ((s->redis = rconn_open(&o, err, sizeof(err))) == NULL) {
        log_warn("worker", "redis %s", err);     /* 'err' names the node */
        return LJ_EUNAVAIL;
    }
    if (create_group(s) != 0) {
        drop_redis(s);
        return LJ_EUNAVAIL;
    }
    atomic_store(&s->w->stats.redis_up, 1);
    claim_dead_local(s);    /* entries of this host's dead processes, at once */
    return 0;
}

static int connect_pg(session *s)
{
    char err[256];

    if ((s->pg = pg_connect(s->w->cfg->pg_dsn, s->w->name, err, sizeof(err))) == NULL) {
        log_warn("worker", "postgresql: %s", err);
        return LJ_EUNAVAIL;
    }
    if (kind_get(s->kind)->prepare && kind_get(s->kind)->prepare(s->pg) != 0) {
        drop_pg(s);
        return LJ_EUNAVAIL;
    }
    atomic_store(&s->w->stats.pg_up, 1);
    return 0;
}

/* Connects what is missing. After a reconnect the worker re-reads its own
 * pending entries first: they may be a batch it never acknowledged. */
static int ensure_connected(session *s)
{
    if (s->redis == NULL) {
        if (connect_redis(s) != 0)
            return LJ_EUNAVAIL;
        session_set_read(s, SESSION_READ_PENDING, "0");
    }
    if (s->pg == NULL) {
        if (connect_pg(s) != 0)
            return LJ_EUNAVAIL;
        session_set_read(s, SESSION_READ_PENDING, "0");
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * The loop
 * ------------------------------------------------------------------------ */

static redisReply *read_batch(session *s)
{
    return worker_xreadgroup(s->redis, s->w, s->group, s->stream, s->count.count,
                             session_read_id(s));
}

/* Chooses the next read's COUNT after a batch of 'got' entries that took
 * 'took_ms' to store and acknowledge. */
static void next_count(session *s, size_t got, double took_ms)
{
    int before = s->count.count;
    int after = batchsize_update(&s->count, got, atomic_load(&s->w->stats.lag), took_ms);

    if (after != before)
        log_debug("worker", "batch COUNT %d -> %d stream=%s got=%zu took_ms=%.0f", before,
                  after, s->stream, got, took_ms);
    atomic_store(&s->w->stats.batch_count, after);
}

/* Reads the next batch into 'b' now, with the worker's connection: its
 * pending entries, or new ones when it reads none ahead. 0, or the error
 * that needs a backoff. */
static int read_now(session *s, batch *b)
{
    int pending_phase = s->read.phase == SESSION_READ_PENDING;
    redisReply *r = read_batch(s);
    int rc = 0;

    if (r == NULL) {
        log_warn("worker", "XREADGROUP failed: %s", rconn_errstr(s->redis));
        drop_redis(s);
        return LJ_EUNAVAIL;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        log_warn("worker", "XREADGROUP refused: %s", r->str);
        drop_redis(s);  /* e.g. NOGROUP after a flush: recreated on reconnect */
        rc = LJ_EREDIS;
    } else if ((rc = batch_from_reply(r, b)) != 0) {
        log_error("worker", "unexpected XREADGROUP reply shape");
    } else if (pending_phase && b->n > 0) {     /* continue after the last pending entry */
        session_set_read(s, SESSION_READ_PENDING, b->entries[b->n - 1].id);
    } else if (pending_phase) {                 /* none is left: new entries */
        session_set_read(s, SESSION_READ_NEW, NULL);
    }
    freeReplyObject(r);
    return rc;
}

/* The next batch: new entries read ahead (readahead.h), the read of the
 * one after asked for at once; else read now, after dropping what was read
 * ahead (its entries are pending: they come with the pending ones). */
static int next_batch(session *s, batch *b)
{
    int rc;

    if (s->ahead == NULL || s->read.phase != SESSION_READ_NEW) {
        if (s->ahead)
            readahead_drop(s->ahead);
        return read_now(s, b);
    }
    readahead_want(s->ahead, s->count.count);      /* no-op when asked already */
    if ((rc = readahead_take(s->ahead, b)) != 0) {
        /* What it read, if anything, is pending under our name. */
        session_set_read(s, SESSION_READ_PENDING, "0");
        if (rc == LJ_ESTALE)
            return 0;
        log_warn("worker", "read-ahead failed (%s): reading alone until the next upkeep",
                 lj_strerror(rc));
        readahead_stop(s->ahead);
        s->ahead = NULL;
        if (rc == LJ_EREDIS)
            drop_redis(s);      /* e.g. NOGROUP after a flush: recreated on reconnect */
        return rc;
    }
    if (!atomic_load(s->w->stop))
        readahead_want(s->ahead, s->count.count);
    return 0;
}

/* Starts the read-ahead when configured and not running (at open, and
 * again at each upkeep after a failure stopped it). */
static void ensure_read_ahead(session *s)
{
    if (s->w->cfg->read_ahead && s->ahead == NULL &&
        (s->ahead = readahead_start(s->w, s->stream, s->group)) == NULL)
        log_warn("worker", "no read-ahead thread: reading one batch at a time");
}

/* One batch read and what follows. 0, or the error that needs a backoff. */
static int step(session *s)
{
    int pending_phase = s->read.phase == SESSION_READ_PENDING;
    int64_t t0;
    batch b;
    int rc;

    batch_init(&b, s->kind);
    if ((rc = next_batch(s, &b)) != 0)
        goto out;
    t0 = session_clock_ms();
    if (b.n > 0 && (rc = handle_batch(s, &b, pending_phase)) != 0) {
        atomic_fetch_add(&s->w->stats.retries, 1);
        settle_count_error(s);
        session_set_read(s, SESSION_READ_PENDING, "0");    /* retry from our pending */
        if (s->pg && PQstatus(s->pg) != CONNECTION_OK)
            drop_pg(s);
        if (s->redis && rconn_broken(s->redis))
            drop_redis(s);
        goto out;   /* a failed batch says nothing about the load: COUNT stays */
    }
    next_count(s, b.n, (double)(session_clock_ms() - t0));
out:
    batch_cleanup(&b);
    return rc;
}

static int session_open(session *s, worker *w)
{
    const char *prefix = w->cfg->stream_prefix;

    memset(s, 0, sizeof(*s));
    s->w = w;
    s->kind = w->kind;
    s->backoff_ms = BACKOFF_MIN_MS;
    worker_stream(w, s->stream, sizeof(s->stream));
    stream_group(s->group, sizeof(s->group), prefix, w->kind);
    stream_side_key(s->dead_stream, sizeof(s->dead_stream), s->stream, STREAM_SIDE_DEAD);
    stream_side_key(s->attempts_key, sizeof(s->attempts_key), s->stream, STREAM_SIDE_ATTEMPTS);
    stream_side_key(s->counts_key, sizeof(s->counts_key), s->stream, STREAM_SIDE_COUNTS);
    stream_alert_name(s->alert_stream, sizeof(s->alert_stream), prefix);
    session_set_read(s, SESSION_READ_PENDING, "0");
    snprintf(s->prune_cursor, sizeof(s->prune_cursor), "0");
    batchsize_init(&s->count, w->cfg->batch_min, w->cfg->batch_size, w->cfg->batch_target_ms,
                   w->cfg->batch_adaptive);
    atomic_store(&w->stats.batch_count, s->count.count);
    s->owners = enrich_new(ENRICH_CACHE_DEVICES, w->cfg->enrich_ttl_ms);
    if (s->owners == NULL)
        return LJ_ENOMEM;
    ensure_read_ahead(s);
    return 0;
}

int loop_run(worker *w)
{
    session s;

    if (session_open(&s, w) != 0) {
        log_error("worker", "out of memory");
        return LJ_ENOMEM;
    }
    log_info("worker", "started consumer=%s stream=%s group=%s", w->name, s.stream, s.group);
    while (!atomic_load(w->stop)) {
        if (ensure_connected(&s) != 0) {
            back_off(&s);
            continue;
        }
        if (session_clock_ms() >= s.next_upkeep_ms) {
            ensure_read_ahead(&s);
            upkeep_run(&s);
            s.next_upkeep_ms = session_clock_ms() + w->cfg->upkeep_interval_ms;
        }
        if (s.redis && s.pg && step(&s) != 0) {
            back_off(&s);
            continue;
        }
        s.backoff_ms = BACKOFF_MIN_MS;
    }
    /* A batch read ahead is stored before stopping, not left pending. */
    if (s.ahead && readahead_busy(s.ahead) && s.read.phase == SESSION_READ_NEW && s.redis &&
        s.pg)
        step(&s);
    readahead_stop(s.ahead);
    drop_redis(&s);
    drop_pg(&s);
    enrich_free(s.owners);
    log_info("worker", "stopped consumer=%s", w->name);
    return 0;
}

void *loop_thread(void *arg)
{
    loop_run(arg);
    return NULL;
}
