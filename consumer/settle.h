/* settle.h -- the one way entries leave the pending list (SPEC §5.1).
 *
 * An entry is settled when it was stored (or found stored already), moved
 * to the dead letters, or found trimmed. Settling is one MULTI/EXEC: the
 * XACK, the counts of what became of the entries (<stream>:counts, the
 * STREAM_COUNT_* fields of streams.h) and the removal of their crash
 * attempts (<stream>:attempts) happen together or not at all, so the
 * conservation identity of docs/reliability.md never drifts from the
 * acknowledgements. Worker thread only.
 */
#ifndef LJ_CONSUMER_SETTLE_H
#define LJ_CONSUMER_SETTLE_H

#include <stddef.h>

#include "rds.h"
#include "session.h"

/* How 'n' settled entries are counted. */
typedef struct settle_counts {
    size_t stored;          /* stored at least one new row */
    size_t duplicate;       /* every row was stored already */
    size_t dead;
    size_t gone;
} settle_counts;

/* Acknowledges the 'n' entry IDs 'ids' and adds 'counts'; 'forget' also
 * removes their crash attempts (entries that were redelivered). 'first',
 * when not NULL, runs in the same transaction before the XACK (the
 * dead-letter XADD). 0, LJ_EREDIS, LJ_EUNAVAIL or LJ_ENOMEM; on error
 * nothing happened and the entries stay pending. */
int settle_entries(session *s, const char *const *ids, size_t n, const settle_counts *counts,
                   int forget, const rds_cmd *first);

#endif
