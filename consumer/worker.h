/* worker.h -- one consumer worker: XREADGROUP -> store -> XACK (SPEC §5.1).
 *
 * Each worker runs on its own thread with its own Redis and PostgreSQL
 * connections. It first re-reads its own pending entries (ID 0 onwards),
 * then new ones (">"). A batch is acknowledged only after store_*() has
 * committed it, so a crash at any point leaves the batch pending, and its
 * redelivery cannot make a second row (ON CONFLICT DO NOTHING).
 * Connection failures are retried with backoff; the worker returns when
 * '*stop' becomes nonzero, between batches.
 */
#ifndef LJ_CONSUMER_WORKER_H
#define LJ_CONSUMER_WORKER_H

#include <stdatomic.h>
#include <stddef.h>

#include "config.h"
#include "metrics.h"

typedef struct worker_stats {
    atomic_ullong batches;
    atomic_ullong entries_acked;
    atomic_ullong rows_inserted;
    atomic_ullong duplicates_skipped;
    atomic_ullong entries_unreadable;
    atomic_ullong unbound_records;
    atomic_ullong alerts_raised;
    atomic_ullong retries;          /* batches that failed and will be read again */
    atomic_int redis_up;
    atomic_int pg_up;
    metrics_hist batch_seconds;     /* read to acknowledge */
} worker_stats;

typedef struct worker {
    int index;
    const lj_config *cfg;
    const atomic_int *stop;
    char name[128];         /* consumer name: host:pid:index */
    worker_stats stats;
} worker;

/* Prepares 'w' as worker 'index' of this process. */
void worker_init(worker *w, int index, const lj_config *cfg, const atomic_int *stop);

/* Runs until '*stop'; returns 0. Thread entry point through worker_thread(). */
int worker_run(worker *w);

/* pthread start routine: worker_run((worker *)arg). */
void *worker_thread(void *arg);

#endif
