/* handle.h -- what becomes of a batch read from Redis (SPEC §5.1).
 *
 * The one path from a read batch (XREADGROUP in loop.c, XAUTOCLAIM in
 * claim.c) to settled entries: gone entries are settled, the rest decoded
 * (kinds.h), unreadable ones dead-lettered (deadletter.h), the others stored
 * in one transaction -- split in halves around an entry PostgreSQL refuses
 * as data, which alone is dead-lettered -- and settled after the commit
 * (settle.h). Alerts of a committed batch are published to alert_stream.
 * A batch that fails leaves its unsettled entries pending, and nothing is
 * held against them. Worker thread only.
 */
#ifndef LJ_CONSUMER_HANDLE_H
#define LJ_CONSUMER_HANDLE_H

#include "batch.h"
#include "session.h"

/* Handles batch 'b' (not yet decoded). 'redelivered': it came from the
 * pending list or a claim, so the attempts that crashed a worker are
 * counted and checked (attempts.h): an entry that crashed workers
 * --max-deliveries times is dead-lettered. 0, or the error of a failed
 * connection or of an outage. */
int handle_batch(session *s, batch *b, int redelivered);

#endif
