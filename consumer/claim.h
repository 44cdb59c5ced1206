/* claim.h -- taking over the pending entries of other consumers (SPEC §5.1).
 *
 * Three ways an entry changes hands:
 *  - claim_dead_local(): consumers named for this host whose process no
 *    longer exists (a killed or crashed worker): their entries are claimed
 *    at once with XCLAIM, and the consumer is removed from the group;
 *  - claim_idle(): entries idle longer than claim_idle_ms on any consumer
 *    (a frozen or remote dead worker), with XAUTOCLAIM repeated until its
 *    cursor is 0-0; IDs it reports as deleted are acknowledged;
 *  - stale consumers (idle past stale_consumer_ms, nothing pending) are
 *    removed by claim_dead_local() too.
 * A consumer is removed by one script that checks, in the same atomic step,
 * that it holds nothing pending. Redis's delivery counter (which XCLAIM
 * raises) is not what dead-letters an entry: attempts.h is. Worker thread
 * only.
 */
#ifndef LJ_CONSUMER_CLAIM_H
#define LJ_CONSUMER_CLAIM_H

#include "session.h"

/* Takes over dead local consumers and removes stale ones. Errors are logged;
 * the next upkeep tries again. */
void claim_dead_local(session *s);

/* Claims and handles entries idle past the limit. 0 or a connection error. */
int claim_idle(session *s);

#endif
