/* deliver.h -- one delivery worker: claims alerts from the outbox and
 * sends each to the targets its route selects.
 *
 * Each worker is a thread with its own PostgreSQL connection and libcurl
 * handle; workers of one process and of other processes share the work
 * only through the outbox's row claims (outbox.h). Per alert: renew the
 * lease; unless attempted before, suppress it if it repeats an earlier one
 * (outbox_suppress); find its route; try every selected target that is
 * neither delivered nor dead and whose retry is due; log each attempt;
 * then NOTIFIED (all delivered), FAILED (none pending, one or more dead
 * letters), UNROUTED (no configured target selected) or back to NEW until
 * the earliest pending retry. Stops after the alert in hand once '*stop'
 * is set.
 */
#ifndef LJ_NOTIFIER_DELIVER_H
#define LJ_NOTIFIER_DELIVER_H

#include <stdatomic.h>

#include "channel.h"
#include "config.h"
#include "post.h"

/* Alert outcomes of the whole process (every worker adds to them). */
typedef struct deliver_stats {
    atomic_ullong claimed;
    atomic_ullong notified;
    atomic_ullong failed;
    atomic_ullong suppressed;
    atomic_ullong unrouted;
    atomic_ullong expired;
    atomic_ullong lost_leases;  /* alerts another notifier took over meanwhile */
} deliver_stats;

typedef struct deliverer {
    int index;
    const lj_config *cfg;
    channel_set *channels;      /* shared; counters are atomic */
    deliver_stats *stats;       /* shared */
    atomic_int *stop;
    atomic_int pg_up;           /* 1 while its PostgreSQL connection works */
    char me[128];               /* claimed_by: host:pid:index */
    unsigned seed;              /* retry jitter */
    post_reply reply;           /* scratch for the reply in hand */
} deliverer;

/* Prepares 'd' (embedded, no allocation) for worker 'index'. */
void deliver_init(deliverer *d, int index, const lj_config *cfg, channel_set *channels,
                  deliver_stats *stats, atomic_int *stop);

/* pthread entry point; 'arg' is a deliverer. Returns NULL when '*stop'. */
void *deliver_thread(void *arg);

#endif
