/* pool.h -- blocking work off the event loop.
 *
 * The loop never blocks on PostgreSQL or on multi-step Redis queries: such
 * work runs on libuv's thread pool (UV_THREADPOOL_SIZE threads, set from
 * --pool-threads before the first use) and its result comes back on the
 * loop. Each pool thread keeps its own PostgreSQL connection (with the
 * staging table prepared), its own synchronous Redis connection and its own
 * owner cache, made on first use and remade after a failure.
 */
#ifndef LJ_PRODUCER_POOL_H
#define LJ_PRODUCER_POOL_H

#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <uv.h>

#include "config.h"
#include "enrich.h"

/* Runs on a pool thread. */
typedef void (*pool_work_fn)(void *arg);
/* Runs on the loop afterwards. */
typedef void (*pool_done_fn)(void *arg);

/* Sets the pool size; call once before any loop runs. 'cfg' must outlive
 * the process's use of the pool. */
void pool_init(const lj_config *cfg);

/* Queues 'work' then 'done' with 'arg'. 0, or a negative UV_E* code (then
 * neither runs). */
int pool_submit(uv_loop_t *loop, pool_work_fn work, pool_done_fn done, void *arg);

/* Pool thread only: this thread's connections, connected on demand; NULL
 * when the server cannot be reached. After a failed call on one, call
 * pool_pg_failed() / pool_redis_failed() so the next use reconnects. */
PGconn *pool_pg(void);
void pool_pg_failed(void);
redisContext *pool_redis(void);
void pool_redis_failed(void);
enrich_cache *pool_owners(void);

#endif
