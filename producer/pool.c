#include "pool.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "log.h"
#include "pg.h"
#include "rconn.h"
#include "store.h"

typedef struct job {
    uv_work_t req;
    uv_timer_t timer;       /* the deadline; closed before the job is freed */
    int timed;
    atomic_int late;        /* set on the loop at the deadline, read by the pool thread */
    pool_work_fn work;
    pool_expire_fn expired;
    pool_done_fn done;
    void *arg;
} job;

static const lj_config *pool_cfg;

/* Per pool thread; the threads live as long as the process. */
static _Thread_local PGconn *tl_pg;
static _Thread_local rconn *tl_redis;
static _Thread_local enrich_cache *tl_owners;
/* Per loop thread: its jobs not yet done. */
static _Thread_local int tl_pending;

void pool_init(const lj_config *cfg)
{
    char n[16];

    pool_cfg = cfg;
    snprintf(n, sizeof(n), "%d", cfg->pool_threads);
    setenv("UV_THREADPOOL_SIZE", n, 1);     /* read by libuv when the pool first starts */
}

static void run_work(uv_work_t *req)
{
    job *j = req->data;

    if (!atomic_load(&j->late))     /* nobody waits for a job past its deadline */
        j->work(j->arg);
}

static void on_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

static void run_done(uv_work_t *req, int status)
{
    job *j = req->data;

    (void)status;   /* never cancelled: we do not call uv_cancel */
    tl_pending--;
    j->done(j->arg, atomic_load(&j->late));
    if (j->timed)
        uv_close((uv_handle_t *)&j->timer, on_timer_closed);
    else
        free(j);
}

static void on_deadline(uv_timer_t *t)
{
    job *j = t->data;

    atomic_store(&j->late, 1);
    j->expired(j->arg);
}

static int submit(uv_loop_t *loop, unsigned timeout_ms, pool_work_fn work,
                  pool_expire_fn expired, pool_done_fn done, void *arg)
{
    job *j = calloc(1, sizeof(*j));
    int rc;

    if (j == NULL)
        return UV_ENOMEM;
    j->work = work;
    j->expired = expired;
    j->done = done;
    j->arg = arg;
    j->req.data = j;
    if ((rc = uv_queue_work(loop, &j->req, run_work, run_done)) != 0) {
        free(j);
        return rc;
    }
    tl_pending++;
    if (expired) {
        j->timed = 1;
        uv_timer_init(loop, &j->timer);
        j->timer.data = j;
        uv_timer_start(&j->timer, on_deadline, timeout_ms, 0);
    }
    return 0;
}

int pool_submit(uv_loop_t *loop, pool_work_fn work, pool_done_fn done, void *arg)
{
    return submit(loop, 0, work, NULL, done, arg);
}

int pool_submit_within(uv_loop_t *loop, unsigned timeout_ms, pool_work_fn work,
                       pool_expire_fn expired, pool_done_fn done, void *arg)
{
    return submit(loop, timeout_ms, work, expired, done, arg);
}

int pool_pending(void)
{
    return tl_pending;
}

PGconn *pool_pg(void)
{
    char err[256];

    if (tl_pg && PQstatus(tl_pg) != CONNECTION_OK)
        pool_pg_failed();
    if (tl_pg)
        return tl_pg;
    if ((tl_pg = pg_connect(pool_cfg->pg_dsn, "ljwx-producer", err, sizeof(err))) == NULL) {
        log_warn("pool", "postgresql: %s", err);
        return NULL;
    }
    if (store_prepare(tl_pg) != 0)
        pool_pg_failed();
    return tl_pg;
}

void pool_pg_failed(void)
{
    if (tl_pg)
        PQfinish(tl_pg);
    tl_pg = NULL;
}

rconn *pool_redis(void)
{
    rconn_opts o = {pool_cfg->redis_host, pool_cfg->redis_port, pool_cfg->redis_cluster,
                    pool_cfg->redis_password, pool_cfg->redis_connect_ms,
                    pool_cfg->redis_timeout_ms};
    char err[256];

    if (tl_redis && rconn_broken(tl_redis))
        pool_redis_failed();
    if (tl_redis)
        return tl_redis;
    tl_redis = rconn_open(&o, err, sizeof(err));
    if (tl_redis == NULL)
        log_warn("pool", "redis: %s", err);
    return tl_redis;
}

void pool_redis_failed(void)
{
    if (tl_redis)
        rconn_close(tl_redis);
    tl_redis = NULL;
}

enrich_cache *pool_owners(void)
{
    if (tl_owners == NULL)
        tl_owners = enrich_new(65536, pool_cfg->enrich_ttl_ms);
    return tl_owners;
}
