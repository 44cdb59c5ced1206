/* xwait.h -- an XADD, then WAIT on the same master link (SPEC §3,
 * --redis-wait-replicas; the outcome rules are xverdict.h's).
 *
 * With need = 0 the XADD goes alone. Otherwise "WAIT need <ms>" is
 * pipelined right after it, routed by the same key, so it reaches the same
 * master's link and counts the replicas that have the entry. When the WAIT
 * cannot vouch for this entry -- its reply came before the XADD's (the
 * XADD was redirected), or the link followed a MOVED or ASK meanwhile --
 * one more WAIT is sent after the XADD's reply, to the node that gave it
 * (rcluster_command_same_node: after an ASK, the importing node that holds
 * the entry, not the source master the map still names).
 *
 * Loop thread only; the link outlives every call in flight.
 */
#ifndef LJ_PRODUCER_XWAIT_H
#define LJ_PRODUCER_XWAIT_H

#include <stddef.h>

#include "rcluster.h"
#include "xverdict.h"

/* Called exactly once: 'id' the entry's ID (XV_ADDED, else NULL); 'err' the
 * XADD's error reply (XV_REFUSED, else NULL), valid during the call only. */
typedef void (*xwait_cb)(xverdict v, const char *id, size_t id_len, const redisReply *err,
                         void *arg);

/* Sends the XADD of 'argc' arguments to the master of 'key', then WAIT
 * for 'need' replicas (up to 'wait_ms'). 0 when sent; LJ_EUNAVAIL or
 * LJ_ENOMEM when not ('cb' is not called). */
int xwait_xadd(rcluster *link, const char *key, int argc, const char **argv,
               const size_t *lens, unsigned need, unsigned wait_ms, xwait_cb cb, void *arg);

#endif
