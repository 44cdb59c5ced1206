#include "handle.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "attempts.h"
#include "deadletter.h"
#include "err.h"
#include "kinds.h"
#include "log.h"
#include "rds.h"
#include "settle.h"
#include "store.h"

#ifdef LJ_TEST_HOOKS
#include <signal.h>
#include <string.h>

/* Test builds only: a committed batch that raised an alert for device
 * $LJ_TEST_KILL_AFTER_COMMIT_SN kills the consumer (SIGKILL) before the
 * alert is published and the entries acknowledged: the window in which a
 * crash used to lose the alert's notification. */
static void kill_after_commit_hook(const store_stats *st)
{
    const char *sn = getenv("LJ_TEST_KILL_AFTER_COMMIT_SN");
    size_t i;

    for (i = 0; sn && *sn && i < st->nalerts; i++)
        if (strcmp(st->alerts[i].device_sn, sn) == 0)
            raise(SIGKILL);
}
#else
#define kill_after_commit_hook(st) ((void)0)
#endif

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
        r = rconn_command(s->redis, s->alert_stream, STORE_ALERT_ARGC, argv);
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
        rc = kind_get(s->kind)->store(s->pg, s->owners, s->stream, s->w->shard, v, ids, n, st);
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
    kill_after_commit_hook(&st);
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

int handle_batch(session *s, batch *b, int redelivered)
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
