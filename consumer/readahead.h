/* readahead.h -- a worker's next batch of new entries, read and decoded on a
 * thread of its own while the worker stores the current one (SPEC §5.1).
 *
 * The worker's time is spent waiting on PostgreSQL, the decoding of the
 * next batch (XREADGROUP reply, JSON) is CPU: overlapped, one worker keeps
 * PostgreSQL busy. The read-ahead reads only new entries (">"), under the
 * worker's consumer name, on its own Redis connection: what it read is in
 * the worker's pending list from then on, so a batch that is dropped (the
 * worker fell back to its pending entries, or stops) is read again from
 * there and nothing is lost. At most one batch is read ahead.
 *
 * Owned by one worker thread; the read-ahead thread touches only its own
 * fields.
 */
#ifndef LJ_CONSUMER_READAHEAD_H
#define LJ_CONSUMER_READAHEAD_H

#include "batch.h"
#include "worker.h"

typedef struct readahead readahead;

/* Starts the thread for worker 'w' reading 'stream' as 'group' (copied).
 * NULL when out of resources (the worker then reads for itself). */
readahead *readahead_start(const worker *w, const char *stream, const char *group);

/* Asks for the next batch of at most 'count' entries; no-op while one is
 * asked for or waiting to be taken. */
void readahead_want(readahead *ra, int count);

/* Nonzero when a batch was asked for and not taken or dropped. */
int readahead_busy(readahead *ra);

/* Waits for the batch asked for and moves it to 'out' (initialised by the
 * caller for the stream's kind; entries decoded). 0; LJ_ESTALE when it
 * was read more than half --claim-idle-ms ago (another consumer may have
 * claimed it since: read the pending list instead); LJ_EUNAVAIL,
 * LJ_EREDIS, LJ_EPARSE or LJ_ENOMEM when the read failed. On an error
 * 'out' is empty and what was read is pending under the worker's name. */
int readahead_take(readahead *ra, batch *out);

/* Waits for a batch asked for, if any, and drops it: its entries stay
 * pending for the worker. */
void readahead_drop(readahead *ra);

/* Drops what was read ahead, stops the thread, frees 'ra' (NULL: no-op). */
void readahead_stop(readahead *ra);

#endif
