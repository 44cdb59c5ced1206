/* legacy.h -- the legacy path: a direct, synchronous PostgreSQL write
 * (SPEC §4), as the old service did, with the same validation, enrichment
 * and alerts as the consumers (common/store.c), rows tagged "optimized".
 *
 * The write runs on a pool thread; the loop gets the outcome in 'done'.
 */
#ifndef LJ_PRODUCER_LEGACY_H
#define LJ_PRODUCER_LEGACY_H

#include <uv.h>

#include "record.h"
#include "store.h"

/* Runs on the loop with the store's outcome: 0 (committed; 'st' says what
 * it did), LJ_EUNAVAIL (also: no reply within the PostgreSQL bounds, or the
 * write never started because its deadline had passed), LJ_EPOISON, LJ_EPG
 * or LJ_ENOMEM. 'late': 'expired' ran first and the client is answered. */
typedef void (*legacy_done_fn)(int rc, const store_stats *st, int late, void *arg);
/* Runs on the loop when the write is not done 'timeout_ms' after queueing. */
typedef void (*legacy_expired_fn)(void *arg);

/* Stores the records of 'b' (borrowed: keep it alive until 'done', which
 * runs in every case, after 'expired' if that ran). 0 when queued, or a
 * negative UV_E* code (neither runs). */
int legacy_store(uv_loop_t *loop, const rec_batch *b, unsigned timeout_ms,
                 legacy_expired_fn expired, legacy_done_fn done, void *arg);

#endif
