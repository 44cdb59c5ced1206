/* loop.h -- a consumer worker's loop: XREADGROUP -> store -> XACK (SPEC §5.1).
 *
 * Each worker runs on its own thread with its own Redis and PostgreSQL
 * connections and serves one stream (health, device info or events). It
 * first re-reads its own pending entries (ID 0 onwards), then new ones
 * (">"). A batch is acknowledged only after it was committed, so a crash at
 * any point leaves it pending, and its redelivery cannot make a second row.
 * A batch read is handled by handle.h (decode, store, settle); this file
 * is the loop: connections, the read phase (session.h), the reads and the
 * COUNT. Between batches it does its upkeep (claim.c, upkeep.c). Connection
 * failures are retried with backoff; the worker returns when '*stop' becomes
 * nonzero, between batches.
 */
#ifndef LJ_CONSUMER_LOOP_H
#define LJ_CONSUMER_LOOP_H

#include "worker.h"

/* Runs worker 'w' (worker_init()) until '*w->stop'; returns 0 (LJ_ENOMEM
 * if it could not start). */
int loop_run(worker *w);

/* pthread start routine: loop_run((worker *)arg). */
void *loop_thread(void *arg);

#endif
