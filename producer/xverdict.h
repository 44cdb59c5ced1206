/* xverdict.h -- what an XADD followed by WAIT means for the device (SPEC §3,
 * --redis-wait-replicas). Pure: replies in, outcome out; unit-tested.
 *
 * The producer pipelines "XADD ..." and "WAIT n <timeout>" on the master
 * link of the entry's shard. The upload is answered 200 only when the XADD
 * returned an ID and WAIT then counted at least n replicas; with n = 0
 * there is no WAIT and the XADD's reply decides alone.
 */
#ifndef LJ_PRODUCER_XVERDICT_H
#define LJ_PRODUCER_XVERDICT_H

#include <hiredis/hiredis.h>

typedef enum xverdict {
    XV_ADDED,           /* the ID is there (and on n replicas): 200 */
    XV_REFUSED,         /* an error reply to the XADD: nothing was added */
    XV_LOST,            /* no reply to the XADD: it may have run */
    XV_UNREPLICATED     /* added on the master, not confirmed on n replicas:
                         * it may survive or not; never a 200 */
} xverdict;

/* The verdict from the XADD's reply 'xadd' (NULL: lost) and, when 'need'
 * > 0, WAIT's reply 'wait' (NULL: lost or not valid for this entry). */
xverdict xverdict_of(const redisReply *xadd, const redisReply *wait, unsigned need);

/* WAIT's own timeout (ms) for a link that drops after 'redis_timeout_ms'
 * without a reply: half of it, so WAIT answers (with its count) before the
 * link gives up on it; at least 1 (WAIT 0 would block forever). */
unsigned xverdict_wait_ms(unsigned redis_timeout_ms);

#endif
