/* settle.h -- the one way entries leave the pending list (SPEC §5.1).
 *
 * An entry is settled when it was stored (or found stored already), moved
 * to the dead letters, or found trimmed. Settling is one Lua script: per
 * entry the XACK, then -- only if that XACK removed it from the pending list
 * (another worker may have claimed and settled it first) -- its count in
 * <stream>:counts (the STREAM_COUNT_* fields of streams.h; a settle of
 * stored entries also counts one batch), and the removal
 * of its crash attempts (<stream>:attempts). So the conservation identity of
 * docs/reliability.md never drifts from the acknowledgements, and an entry
 * settled twice is counted once. Worker thread only.
 */
#ifndef LJ_CONSUMER_SETTLE_H
#define LJ_CONSUMER_SETTLE_H

#include <stddef.h>

#include "session.h"

/* How 'n' settled entries are counted: with 'gone' set all are gone;
 * else up to 'stored' of those this call settles count as stored, the rest
 * as duplicates. */
typedef struct settle_counts {
    size_t stored;          /* stored at least one new row */
    int gone;               /* trimmed while pending */
} settle_counts;

/* Acknowledges the 'n' entry IDs 'ids' and counts those it settled;
 * 'forget' also removes their crash attempts (redelivered entries). 0,
 * LJ_EREDIS, LJ_EUNAVAIL or LJ_ENOMEM; on error the entries stay pending. */
int settle_entries(session *s, const char *const *ids, size_t n, const settle_counts *counts,
                   int forget);

/* Settles entry 'id' as dead: XACK and, if that settled it, the Redis copy
 * (XADD <stream>:dead MAXLEN ~ --dead-stream-maxlen with the 'nfields'
 * strings 'fields', field/value pairs) and its count. Errors as above. */
int settle_dead(session *s, const char *id, const char *const *fields, size_t nfields);

/* Counts one failed batch attempt (STREAM_COUNT_ERRORS: the old
 * "consumer_stats" errors), when Redis is still connected. 0 or
 * LJ_EUNAVAIL; the attempt's retry does not depend on it. */
int settle_count_error(session *s);

/* Counts 'n' entries Redis dropped from the pending list itself (deleted
 * from the stream: XAUTOCLAIM and XCLAIM leave them out) as gone. */
int settle_count_gone(session *s, size_t n);

#endif
