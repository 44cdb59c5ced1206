/* session.h -- what a running worker holds; shared by the consumer's
 * loop.c, handle.c, claim.c, deadletter.c, settle.c, attempts.c and
 * upkeep.c (internal to consumer/). A session belongs to one worker thread.
 * It includes only headers that do not include it back; the code that
 * handles a read batch is handle.h's, not loop.c's.
 *
 * The read phase: after a (re)connect, a failed batch or a take-over the
 * worker re-reads its own pending entries (SESSION_READ_PENDING, from an
 * entry ID onwards: "0" is from the start), and once none is left reads new
 * ones (SESSION_READ_NEW, ">"). session_set_read() is its one setter.
 */
#ifndef LJ_CONSUMER_SESSION_H
#define LJ_CONSUMER_SESSION_H

#include <stdint.h>

#include <hiredis/hiredis.h>
#include <libpq-fe.h>

#include "batch.h"
#include "batchsize.h"
#include "enrich.h"
#include "rconn.h"
#include "readahead.h"
#include "streams.h"
#include "worker.h"

typedef enum session_phase {
    SESSION_READ_PENDING = 0,   /* own pending entries, after read.after */
    SESSION_READ_NEW            /* new entries: ">" */
} session_phase;

typedef struct session {
    worker *w;
    stream_kind kind;
    rconn *redis;                   /* one Redis or a cluster; NULL while disconnected */
    readahead *ahead;               /* the next batch of new entries, or NULL (--read-ahead 0) */
    PGconn *pg;                     /* NULL while disconnected */
    char stream[STREAM_NAME_MAX];
    char group[STREAM_NAME_MAX];
    char dead_stream[STREAM_KEY_MAX];
    char attempts_key[STREAM_KEY_MAX];  /* attempts.h */
    char counts_key[STREAM_KEY_MAX];    /* settle.h */
    char prune_cursor[32];              /* HSCAN cursor of attempts_prune() */
    char alert_stream[STREAM_NAME_MAX];
    struct {
        session_phase phase;
        char after[BATCH_ID_MAX];   /* SESSION_READ_PENDING: read after this ID */
    } read;                         /* set by session_set_read() only */
    batchsize count;                /* COUNT of the next XREADGROUP */
    unsigned backoff_ms;
    enrich_cache *owners;
    int64_t next_upkeep_ms;
    int64_t next_partitions_ms;
} session;

/* Milliseconds on the monotonic clock. */
int64_t session_clock_ms(void);

/* Sets the read phase: SESSION_READ_PENDING after entry 'after' ("0" or
 * NULL: all of them), or SESSION_READ_NEW ('after' unused, may be NULL). */
void session_set_read(session *s, session_phase phase, const char *after);

/* The ID the next XREADGROUP reads from: the pending cursor, or ">". */
const char *session_read_id(const session *s);

/* Runs a command on the stream's node: every key a worker names but the
 * alert stream is the stream or one of its side keys (streams.h), in its
 * slot. As rconn_command(); 's'->redis must be connected. */
redisReply *session_command(session *s, int argc, const char **argv);

#endif
