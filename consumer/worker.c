#include "worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "attempts.h"
#include "claim.h"
#include "deadletter.h"
#include "err.h"
#include "kinds.h"
#include "log.h"
#include "pg.h"
#include "rds.h"
#include "session.h"
#include "settle.h"
#include "store.h"
#include "upkeep.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define ENRICH_CACHE_DEVICES 65536

void worker_init(worker *w, int index, stream_kind kind, const lj_config *cfg,
                 const atomic_int *stop)
{
    memset(w, 0, sizeof(*w));
    w->index = index;
    w->kind = kind;
    w->cfg = cfg;
    w->stop = stop;
    atomic_store(&w->stats.lag, -1);
    worker_host(w->host, sizeof(w->host));
    snprintf(w->name, sizeof(w->name), "%s:%d:%d", w->host, (int)getpid(), index);
}

/* The first line of file 'path' into 'out' ("" when unreadable). */
static void read_line(const char *path, char *out, size_t len)
{
    FILE *f = fopen(path, "r");

    out[0] = '\0';
    if (f && fgets(out, (int)len, f) == NULL)
        out[0] = '\0';
    if (f)
        fclose(f);
    out[strcspn(out, "\n")] = '\0';
}

void worker_host(char *out, size_t len)
{
    char host[64];
    char key[160];
    char boot[64];
    char ns[64];
    ssize_t n;

    if (gethostname(host, sizeof(host)) != 0)
        snprintf(host, sizeof(host), "localhost");
    host[sizeof(host) - 1] = '\0';
    host[strcspn(host, ":")] = '\0';   /* ':' separates the name's parts */
    read_line("/proc/sys/kernel/random/boot_id", boot, sizeof(boot));
    if ((n = readlink("/proc/self/ns/pid", ns, sizeof(ns) - 1)) < 0)
        n = 0;
    ns[n] = '\0';
    snprintf(key, sizeof(key), "%s|%s", boot, ns);
    snprintf(out, len, "%s~%08x", host, stream_hash(key, strlen(key)));
}

int64_t session_clock_ms(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
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

static int connect_redis(session *s)
{
    const lj_config *cfg = s->w->cfg;
    char err[256];

    /* Command timeout above BLOCK, so a blocked read is not cut short. */
    s->redis = rds_connect(cfg->redis_host, cfg->redis_port, cfg->redis_password,
                           cfg->redis_connect_ms, cfg->block_ms + 5000, err, sizeof(err));
    if (s->redis == NULL) {
        log_warn("worker", "redis %s:%d: %s", cfg->redis_host, cfg->redis_port, err);
        return LJ_EUNAVAIL;
    }
    if (rds_group_create(s->redis, s->stream, s->group) != 0) {
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
        snprintf(s->next_id, sizeof(s->next_id), "0");
    }
    if (s->pg == NULL) {
        if (connect_pg(s) != 0)
            return LJ_EUNAVAIL;
        snprintf(s->next_id, sizeof(s->next_id), "0");
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Storing and settling
 * ------------------------------------------------------------------------ */

/* Tells notifiers about the alerts of a committed batch. A failure here is
 * logged, not retried: the alerts are already in t_alert_info. */
static void publish_alerts(session *s, const store_stats *st)
{
    size_t i;

    for (i = 0; i < st->nalerts; i++) {
        const char *argv[STORE_ALERT_ARGC];
        store_alert_text t;
        redisReply *r;

        store_alert_argv(s->alert_stream, s->w->cfg->alert_stream_maxlen, &st->alerts[i], &t,
                         argv);
        r = rds_command(s->redis, STORE_ALERT_ARGC, argv);
        if (r == NULL || r->type == REDIS_REPLY_ERROR)
            log_warn("worker", "alert not published alert_id=%s device=%s", t.id,
                     st->alerts[i].device_sn);
        if (r)
            freeReplyObject(r);
    }
}

/* Stores the 'n' (all ok) entries of 'e' in one transaction. */
static int store_entries(session *s, batch_entry *const *e, size_t n, store_stats *st)
{
    const char **ids = malloc((n ? n : 1) * sizeof(*ids));
    kind_value **v = malloc((n ? n : 1) * sizeof(*v));
    size_t i;
    int rc = LJ_ENOMEM;

    for (i = 0; ids && v && i < n; i++) {
        ids[i] = e[i]->id;
        v[i] = &e[i]->u;
    }
    if (ids && v)
        rc = kind_get(s->kind)->store(s->pg, s->owners, s->stream, v, ids, n, st);
    free(v);
    free(ids);
    return rc;
}

static void count_committed(session *s, size_t n, const store_stats *st)
{
    worker_stats *ws = &s->w->stats;

    atomic_fetch_add(&ws->batches, 1);
    atomic_fetch_add(&ws->rows_inserted, st->inserted);
    atomic_fetch_add(&ws->duplicates_skipped, st->duplicates);
    atomic_fetch_add(&ws->unbound_records, st->unbound);
    atomic_fetch_add(&ws->alerts_raised, st->nalerts);
    log_debug("worker", "committed stream=%s entries=%zu rows=%zu duplicates=%zu", s->stream, n,
              st->inserted, st->duplicates);
}

/* Stores and settles 'n' entries. When PostgreSQL refuses the data
 * (LJ_EPOISON: not when it is down or busy), the batch is split in halves
 * until the entry it refuses is alone; that one is dead-lettered and the
 * rest committed. 'forget': the entries were redelivered (settle.h). */
static int store_and_settle(session *s, batch_entry *const *e, size_t n, const char **ids,
                            int forget)
{
    settle_counts counts = {0, 0};
    store_stats st;
    size_t i;
    int rc;

    if (n == 0)
        return 0;
    rc = store_entries(s, e, n, &st);
    if (rc == LJ_EPOISON && n == 1)
        return dlq_move(s, e[0], "refused by PostgreSQL (see the consumer log)");
    if (rc == LJ_EPOISON) {
        if ((rc = store_and_settle(s, e, n / 2, ids, forget)) != 0)
            return rc;
        return store_and_settle(s, e + n / 2, n - n / 2, ids, forget);
    }
    if (rc != 0)
        return rc;
    publish_alerts(s, &st);
    for (i = 0; i < n; i++)
        ids[i] = e[i]->id;
    counts.stored = st.entries_new < n ? st.entries_new : n;
    /* Not settled: stays pending, and its redelivery is skipped as duplicates. */
    if ((rc = settle_entries(s, ids, n, &counts, forget)) == 0)
        count_committed(s, n, &st);
    store_stats_cleanup(&st);
    return rc;
}

/* Entries that will not be stored: gone ones are settled (nothing is left
 * to store), unreadable ones dead-lettered. Returns 0 or the error that
 * stopped it; '*keep' counts the 'n' entries of 'in' left to store. */
static int settle_unstorable(session *s, batch_entry *const *in, size_t n, batch_entry **keep,
                             size_t *nkeep, int forget)
{
    settle_counts gone = {0, 1};
    size_t i;
    int rc = 0;

    *nkeep = 0;
    for (i = 0; rc == 0 && i < n; i++) {
        batch_entry *e = in[i];
        const char *id = e->id;

        if (e->gone) {
            log_warn("worker", "entry trimmed while pending stream=%s id=%s", s->stream, id);
            if ((rc = settle_entries(s, &id, 1, &gone, forget)) == 0)
                atomic_fetch_add(&s->w->stats.entries_gone, 1);
        } else if (!e->ok) {
            rc = dlq_move(s, e, e->reason);
        } else {
            keep[(*nkeep)++] = e;
        }
    }
    return rc;
}

/* Encodes the entries of 'e' as the store will, into a scratch buffer: a
 * crash the data causes there happens while the attempt is still counted.
 * Redelivered batches only (rare); the store encodes again with the owners. */
static void rehearse_encoding(session *s, batch_entry *const *e, size_t n)
{
    const kind_ops *k = kind_get(s->kind);
    lj_buf scratch;
    size_t i;

    if (k->rehearse == NULL)
        return;
    lj_buf_init(&scratch);
    for (i = 0; i < n; i++)
        if (e[i]->ok)
            k->rehearse(&e[i]->u, e[i]->id, &scratch);
    lj_buf_cleanup(&scratch);
}

/* Decodes, then stores and settles, the 'n' entries 'e' as one batch.
 * 'redelivered': an attempt is counted against each while its data is
 * decoded (attempts.h), and settling removes their attempts. */
static int handle_group(session *s, batch_entry *const *e, size_t n, int redelivered,
                        batch_entry **keep, const char **ids)
{
    size_t nkeep;
    size_t i;
    int rc;

    if (redelivered && (rc = attempts_add(s, e, n, 1)) != 0)
        return rc;
    for (i = 0; i < n; i++)
        batch_decode(s->kind, e[i]);
    if (redelivered)
        rehearse_encoding(s, e, n);
    /* From here on the PostgreSQL round trips: a worker killed while it
     * waits on them did not die of the data. */
    if (redelivered && (rc = attempts_add(s, e, n, -1)) != 0)
        return rc;
    if ((rc = settle_unstorable(s, e, n, keep, &nkeep, redelivered)) != 0)
        return rc;
    return store_and_settle(s, keep, nkeep, ids, redelivered);
}

/* A redelivered batch: entries that crashed workers often enough are
 * dead-lettered; those with no attempt go together; those with some go one
 * at a time, so that only the one that crashes keeps being counted. */
static int handle_redelivered(session *s, batch *b, batch_entry **all, batch_entry **keep,
                              const char **ids)
{
    char reason[96];
    size_t fresh = 0;
    size_t i;
    int rc;

    for (i = 0; i < b->n; i++)
        all[i] = &b->entries[i];
    if ((rc = attempts_read(s, all, b->n)) != 0)
        return rc;
    for (i = 0; i < b->n; i++)
        if (b->entries[i].attempts == 0)
            all[fresh++] = &b->entries[i];
    if ((rc = handle_group(s, all, fresh, 1, keep, ids)) != 0)
        return rc;
    for (i = 0; rc == 0 && i < b->n; i++) {
        batch_entry *e = &b->entries[i];

        if (e->attempts == 0)
            continue;
        if (e->attempts >= s->w->cfg->max_deliveries) {
            snprintf(reason, sizeof(reason), "a worker crashed on this entry %lld times",
                     e->attempts);
            rc = dlq_move(s, e, reason);
        } else {
            rc = handle_group(s, &e, 1, 1, keep, ids);
        }
    }
    return rc;
}

int worker_handle_batch(session *s, batch *b, int redelivered)
{
    batch_entry **all = malloc(b->n * sizeof(*all));
    batch_entry **keep = malloc(b->n * sizeof(*keep));
    const char **ids = malloc(b->n * sizeof(*ids));
    struct timespec t0;
    size_t i;
    int rc;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (all == NULL || keep == NULL || ids == NULL) {
        rc = LJ_ENOMEM;
        goto out;
    }
    if (redelivered) {
        rc = handle_redelivered(s, b, all, keep, ids);
    } else {
        for (i = 0; i < b->n; i++)
            all[i] = &b->entries[i];
        rc = handle_group(s, all, b->n, 0, keep, ids);
    }
    if (rc == 0) {
        struct timespec t;

        clock_gettime(CLOCK_MONOTONIC, &t);
        metrics_hist_observe(&s->w->stats.batch_seconds,
                             (double)(t.tv_sec - t0.tv_sec) +
                                 (double)(t.tv_nsec - t0.tv_nsec) / 1e9);
    }
out:
    free(all);
    free(keep);
    free(ids);
    return rc;
}

/* ------------------------------------------------------------------------
 * The loop
 * ------------------------------------------------------------------------ */

static redisReply *read_batch(session *s)
{
    char count[16];
    char block[16];
    const char *argv[] = {"XREADGROUP", "GROUP", s->group, s->w->name, "COUNT", count,
                          "BLOCK", block, "STREAMS", s->stream, s->next_id};

    snprintf(count, sizeof(count), "%d", s->count.count);
    snprintf(block, sizeof(block), "%d", s->w->cfg->block_ms);
    return rds_command(s->redis, 11, argv);
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

/* One XREADGROUP and what follows. 0, or the error that needs a backoff. */
static int step(session *s)
{
    redisReply *r = read_batch(s);
    int pending_phase = strcmp(s->next_id, ">") != 0;
    int64_t t0;
    batch b;
    int rc;

    if (r == NULL) {
        log_warn("worker", "XREADGROUP failed: %s", s->redis->errstr);
        drop_redis(s);
        return LJ_EUNAVAIL;
    }
    batch_init(&b, s->kind);
    if (r->type == REDIS_REPLY_ERROR) {
        log_warn("worker", "XREADGROUP refused: %s", r->str);
        drop_redis(s);  /* e.g. NOGROUP after a flush: recreated on reconnect */
        rc = LJ_EREDIS;
        goto out;
    }
    if ((rc = batch_from_reply(r, &b)) != 0) {
        log_error("worker", "unexpected XREADGROUP reply shape");
        goto out;
    }
    if (pending_phase) {
        /* Continue after the last pending entry; new entries once none is left. */
        snprintf(s->next_id, sizeof(s->next_id), "%s", b.n ? b.entries[b.n - 1].id : ">");
    }
    t0 = session_clock_ms();
    if (b.n > 0 && (rc = worker_handle_batch(s, &b, pending_phase)) != 0) {
        atomic_fetch_add(&s->w->stats.retries, 1);
        settle_count_error(s);
        snprintf(s->next_id, sizeof(s->next_id), "0");     /* retry from our pending */
        if (s->pg && PQstatus(s->pg) != CONNECTION_OK)
            drop_pg(s);
        if (s->redis && s->redis->err)
            drop_redis(s);
        goto out;   /* a failed batch says nothing about the load: COUNT stays */
    }
    next_count(s, b.n, (double)(session_clock_ms() - t0));
out:
    batch_cleanup(&b);
    freeReplyObject(r);
    return rc;
}

static int session_open(session *s, worker *w)
{
    const char *prefix = w->cfg->stream_prefix;

    memset(s, 0, sizeof(*s));
    s->w = w;
    s->kind = w->kind;
    s->backoff_ms = BACKOFF_MIN_MS;
    stream_name(s->stream, sizeof(s->stream), prefix, w->kind);
    stream_group(s->group, sizeof(s->group), prefix, w->kind);
    stream_side_key(s->dead_stream, sizeof(s->dead_stream), s->stream, STREAM_SIDE_DEAD);
    stream_side_key(s->attempts_key, sizeof(s->attempts_key), s->stream, STREAM_SIDE_ATTEMPTS);
    stream_side_key(s->counts_key, sizeof(s->counts_key), s->stream, STREAM_SIDE_COUNTS);
    stream_alert_name(s->alert_stream, sizeof(s->alert_stream), prefix);
    snprintf(s->next_id, sizeof(s->next_id), "0");
    snprintf(s->prune_cursor, sizeof(s->prune_cursor), "0");
    batchsize_init(&s->count, w->cfg->batch_min, w->cfg->batch_size, w->cfg->batch_target_ms,
                   w->cfg->batch_adaptive);
    atomic_store(&w->stats.batch_count, s->count.count);
    s->owners = enrich_new(ENRICH_CACHE_DEVICES, w->cfg->enrich_ttl_ms);
    return s->owners ? 0 : LJ_ENOMEM;
}

int worker_run(worker *w)
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
            upkeep_run(&s);
            s.next_upkeep_ms = session_clock_ms() + w->cfg->upkeep_interval_ms;
        }
        if (s.redis && s.pg && step(&s) != 0) {
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
