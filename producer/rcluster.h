/* rcluster.h -- the producer's Redis link on a libuv loop: one Redis, or a
 * Redis Cluster (SPEC §3, docs/scaling.md).
 *
 * Without seeds it is one rlink (rlink.h) and every command goes there,
 * unchanged: the behaviour of one Redis is rlink's.
 *
 * With seeds ("host:port,...", --redis-cluster) it learns the slot map
 * (CLUSTER SLOTS, sent on the loop through any link that is up, else
 * through the seeds), keeps one rlink per master, and sends each command to
 * the master of its key's slot (cluster.h):
 *   - MOVED: the slot's new owner is recorded, a map refresh is asked for,
 *     and the command is sent there (it did not run);
 *   - ASK: ASKING and the command go to the node named, once;
 *   - TRYAGAIN / CLUSTERDOWN: the error reply goes to the caller (who
 *     answers 503 or keeps its last reading) and the map is refreshed;
 *   - a master whose link is down, or a slot no master serves: refused at
 *     once (LJ_EUNAVAIL) and the map refreshed in the background;
 *   - a command written whose link was then lost or timed out: the callback
 *     gets NULL and the command is never resent (an XADD may have run).
 * A few redirects at most per command; past them the caller gets NULL.
 *
 * Loop thread only. Every command names the key that routes it; a command
 * of several keys must keep them in one slot (hash tags). hiredis frees
 * replies after the callback returns: copy what you keep.
 */
#ifndef LJ_PRODUCER_RCLUSTER_H
#define LJ_PRODUCER_RCLUSTER_H

#include <stddef.h>

#include <uv.h>

#include "config.h"
#include "rlink.h"

typedef struct rcluster rcluster;

/* Starts connecting to --redis-host:--redis-port, or to the seeds of
 * --redis-cluster ('cfg' outlives the link). NULL when out of memory or
 * when the seed list does not parse (logged). */
rcluster *rcluster_new(uv_loop_t *loop, const lj_config *cfg);

/* 1 when talking to a cluster. */
int rcluster_is_cluster(const rcluster *c);

/* Nonzero when commands can be sent: one Redis connected; or on a cluster,
 * the map known, every slot served and every master's link up. */
int rcluster_ready(const rcluster *c);

/* Sends 'argc' arguments ('lens' bytes each) to the node serving 'key'
 * (NUL-terminated; NULL: any master, for commands without a key). 0 when
 * sent ('cb' is called exactly once, NULL 'cb': the reply is dropped);
 * LJ_EUNAVAIL when it cannot be sent now, LJ_ENOMEM ('cb' not called). The
 * arguments are copied on a cluster (a redirect resends them). */
int rcluster_command(rcluster *c, const char *key, int argc, const char **argv,
                     const size_t *lens, rlink_cb cb, void *arg);

/* "host:port" of a master, NUL included (cluster.h's host and a port). */
#define RCLUSTER_NAME_MAX 72

/* Writes "host:port" of the master that serves 'key' in the slot map now
 * (a MOVED may still send the command elsewhere). 0; LJ_EUNAVAIL on one
 * Redis, before a map is known, or when no master serves the slot. */
int rcluster_master_name(const rcluster *c, const char *key, char *out, size_t len);

/* Inside the callback of a command sent by rcluster_command(): sends
 * another to the node that gave that reply, whatever the map says of the
 * key now (after an ASK it is not the slot's master yet): for a keyless
 * follow-up such as WAIT, which counts the replicas of the writes of its
 * own connection. On one Redis, as rcluster_command(). Elsewhere
 * LJ_EUNAVAIL; else as rcluster_command(). */
int rcluster_command_same_node(rcluster *c, int argc, const char **argv, const size_t *lens,
                               rlink_cb cb, void *arg);

/* Nonzero when no command waits for its reply. */
int rcluster_idle(const rcluster *c);

/* Counters, for logs and tests. */
typedef struct rcluster_counts {
    unsigned long long moved;
    unsigned long long ask;
    unsigned long long refreshes;   /* maps learnt */
} rcluster_counts;
void rcluster_get_counts(const rcluster *c, rcluster_counts *out);

/* Disconnects every link (pending callbacks get NULL now) and releases
 * 'c' once its handles are closed; run the loop afterwards. */
void rcluster_close(rcluster *c);

#endif
