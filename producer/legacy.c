#include "legacy.h"

#include <stdlib.h>

#include "err.h"
#include "pool.h"

typedef struct legacy_job {
    const rec_batch *b;
    legacy_expired_fn expired;
    legacy_done_fn done;
    void *arg;
    store_stats st;
    int rc;
} legacy_job;

static void work(void *arg)
{
    legacy_job *j = arg;
    PGconn *pg = pool_pg();
    store_item item = {j->b->recs, j->b->n, NULL, j->b->batch_id[0] ? j->b->batch_id : NULL};

    if (pg == NULL) {
        j->rc = LJ_EUNAVAIL;
        return;
    }
    j->rc = store_health_batch(pg, pool_owners(), &item, 1, "optimized", &j->st);
    if (j->rc == LJ_EUNAVAIL)
        pool_pg_failed();
}

static void expired(void *arg)
{
    legacy_job *j = arg;

    j->expired(j->arg);
}

static void done(void *arg, int late)
{
    legacy_job *j = arg;

    j->done(j->rc, &j->st, late, j->arg);
    store_stats_cleanup(&j->st);
    free(j);
}

int legacy_store(uv_loop_t *loop, const rec_batch *b, unsigned timeout_ms,
                 legacy_expired_fn on_expired, legacy_done_fn fn, void *arg)
{
    legacy_job *j = calloc(1, sizeof(*j));
    int rc;

    if (j == NULL)
        return UV_ENOMEM;
    j->b = b;
    j->rc = LJ_EUNAVAIL;    /* what 'done' says when the work never ran */
    j->expired = on_expired;
    j->done = fn;
    j->arg = arg;
    if ((rc = pool_submit_within(loop, timeout_ms, work, expired, done, j)) != 0)
        free(j);
    return rc;
}
