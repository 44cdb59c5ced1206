/* attempts.h -- counting the attempts that crashed a worker (SPEC §5.1).
 *
 * Redis's own delivery counter cannot tell why an entry came back: a worker
 * that retried through a PostgreSQL outage, one that was killed while it
 * waited on a commit, and one that crashed on the entry's data all look the
 * same. So the counter is not used; instead, before a worker decodes a
 * redelivered entry it adds 1 to the entry's field in <stream>:attempts and
 * takes it back once the data was handled and only waits remain (the
 * PostgreSQL round trips). A worker that dies in between -- on the data --
 * leaves its attempt counted; one killed while waiting, or retrying an
 * outage, leaves nothing. First deliveries are not counted at all (no cost
 * on the normal path): a crash there shows as a redelivery with no attempts.
 * Entries with attempts are handled one at a time, so only the entry that
 * crashes keeps growing its count; settle.h removes the field when the entry
 * is settled. Worker thread only.
 */
#ifndef LJ_CONSUMER_ATTEMPTS_H
#define LJ_CONSUMER_ATTEMPTS_H

#include <stddef.h>

#include "session.h"

/* Reads the attempts of the 'n' entries 'e' into each e[i]->attempts.
 * 0, LJ_EREDIS, LJ_EUNAVAIL or LJ_ENOMEM. */
int attempts_read(session *s, batch_entry *const *e, size_t n);

/* Adds 'delta' (1 or -1) to the attempts of the 'n' entries 'e'; a count
 * back at 0 is removed. Errors as attempts_read(). */
int attempts_add(session *s, batch_entry *const *e, size_t n, int delta);

/* Removes the attempts of entries below 'minid' (trimmed: none of them can
 * be pending any more), one HSCAN page per call, going on where the last
 * call stopped. */
void attempts_prune(session *s, const char *minid);

#endif
