/* session.h -- what a running worker holds; shared by the consumer's
 * worker.c, claim.c, deadletter.c and upkeep.c (internal to consumer/).
 * A session belongs to one worker thread.
 */
#ifndef LJ_CONSUMER_SESSION_H
#define LJ_CONSUMER_SESSION_H

#include <stdint.h>

#include <hiredis/hiredis.h>
#include <libpq-fe.h>

#include "batch.h"
#include "batchsize.h"
#include "enrich.h"
#include "streams.h"
#include "worker.h"

typedef struct session {
    worker *w;
    stream_kind kind;
    redisContext *redis;            /* NULL while disconnected */
    PGconn *pg;                     /* NULL while disconnected */
    char stream[STREAM_NAME_MAX];
    char group[STREAM_NAME_MAX];
    char dead_stream[STREAM_KEY_MAX];
    char attempts_key[STREAM_KEY_MAX];  /* attempts.h */
    char counts_key[STREAM_KEY_MAX];    /* settle.h */
    char prune_cursor[32];              /* HSCAN cursor of attempts_prune() */
    char alert_stream[STREAM_NAME_MAX];
    char next_id[BATCH_ID_MAX];     /* "0"-based while re-reading pending, then ">" */
    batchsize count;                /* COUNT of the next XREADGROUP */
    unsigned backoff_ms;
    enrich_cache *owners;
    int64_t next_upkeep_ms;
    int64_t next_partitions_ms;
} session;

/* Milliseconds on the monotonic clock. */
int64_t session_clock_ms(void);

/* Handles a batch read from Redis (not yet decoded): settles gone entries,
 * decodes the rest, dead-letters unreadable ones, stores the others
 * (isolating entries PostgreSQL refuses as data) and settles what was
 * committed. 'redelivered': the batch came from the pending list or a
 * claim, so the attempts that crashed a worker are counted and checked
 * (attempts.h). 0, or the error of a failed connection or of an outage
 * (the unsettled entries stay pending, and nothing is held against them). */
int worker_handle_batch(session *s, batch *b, int redelivered);

#endif
