/* pool.h -- blocking work off the event loop.
 *
 * The loop never blocks on PostgreSQL or on multi-step Redis queries: such
 * work runs on libuv's thread pool (UV_THREADPOOL_SIZE threads, set from
 * --pool-threads before the first use) and its result comes back on the
 * loop. Each pool thread keeps its own PostgreSQL connection (with the
 * staging table prepared), its own synchronous Redis link (rconn.h: one
 * Redis, or every master of --redis-cluster, routed by key) and its own
 * owner cache, made on first use and remade after a failure.
 *
 * Deadlines: a request waiting on a job answers when the job's deadline
 * passes (pool_submit_within); the job's late completion is then harmless
 * (its 'done' only frees). Every PostgreSQL wait inside a job is bounded
 * (pg.h), so a hung server pins a pool thread for a bounded time only.
 */
#ifndef LJ_PRODUCER_POOL_H
#define LJ_PRODUCER_POOL_H

#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <uv.h>

#include "config.h"
#include "enrich.h"
#include "rconn.h"

/* Runs on a pool thread. */
typedef void (*pool_work_fn)(void *arg);
/* Runs on the loop afterwards, exactly once. 'late': the job's deadline
 * passed first ('expired' ran and answered the client); the work may then
 * not have run at all (a job still queued at its deadline is skipped). The
 * loop and what the submitter borrowed are still alive: shutdown waits for
 * pool_pending() to reach 0 before it frees anything. */
typedef void (*pool_done_fn)(void *arg, int late);
/* Runs on the loop when the deadline passes before the work is done. The
 * work may be running: touch nothing it writes. */
typedef void (*pool_expire_fn)(void *arg);

/* Sets the pool size; call once before any loop runs. 'cfg' must outlive
 * the process's use of the pool. */
void pool_init(const lj_config *cfg);

/* Loop thread only. Queues 'work' then 'done' with 'arg'. 0, or a negative
 * UV_E* code (then neither runs). */
int pool_submit(uv_loop_t *loop, pool_work_fn work, pool_done_fn done, void *arg);

/* As pool_submit(), with a deadline: when 'done' has not run 'timeout_ms'
 * after now, 'expired' runs on the loop, and 'done' later gets late=1. */
int pool_submit_within(uv_loop_t *loop, unsigned timeout_ms, pool_work_fn work,
                       pool_expire_fn expired, pool_done_fn done, void *arg);

/* Loop thread only: the jobs submitted from this thread whose 'done' has not
 * run yet. Each job takes at most the PostgreSQL bounds (pg.h) plus its wait
 * in the queue; after pg_abort_waits() it ends at once. */
int pool_pending(void);

/* Pool thread only: this thread's connections, connected on demand; NULL
 * when the server cannot be reached. After a failed call on one, call
 * pool_pg_failed() / pool_redis_failed() so the next use reconnects. */
PGconn *pool_pg(void);
void pool_pg_failed(void);
rconn *pool_redis(void);
void pool_redis_failed(void);
enrich_cache *pool_owners(void);

#endif
