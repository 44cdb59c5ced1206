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
    char dead_stream[STREAM_NAME_MAX + 8];
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

/* Handles a batch read from Redis: acknowledges gone entries, dead-letters
 * unreadable and over-delivered ones ('redelivered': the batch came from
 * the pending list or a claim, so delivery counts are checked), stores the
 * rest (isolating entries PostgreSQL refuses) and acknowledges what was
 * committed. 0, or LJ_EUNAVAIL/LJ_EREDIS when a connection failed (the
 * unacknowledged entries stay pending). */
int worker_handle_batch(session *s, batch *b, int redelivered);

/* XACKs 'n' entry IDs. 0, LJ_EREDIS or LJ_EUNAVAIL. */
int worker_ack(session *s, const char *const *ids, size_t n);

#endif
