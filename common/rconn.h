/* rconn.h -- one synchronous Redis "connection" that is either one server
 * or a Redis Cluster (consumer workers, tools).
 *
 * With no seeds it is one redisContext (rds.h) and every command goes
 * there. With seeds ("host:port,..."), it learns the slot map (CLUSTER
 * SLOTS, cluster.h), keeps one context per master it has talked to, and
 * sends each command to the master of its key's slot:
 *   - MOVED: the slot's new master is recorded, the map is re-learnt before
 *     the next command, and the command is sent there (it did not run);
 *   - ASK: "ASKING" and the command, to the node named, once;
 *   - TRYAGAIN / CLUSTERDOWN: resent after a short pause, a few times, then
 *     the error reply is returned;
 *   - a node that cannot be reached before the command was written: the map
 *     is re-learnt (from any known node, then the seeds) and the command is
 *     sent again, a few times, then NULL;
 *   - a failure after the command was written (timeout, reset): NULL at
 *     once, the node's context dropped and the map re-learnt next time. The
 *     command may have run; it is never resent here (the caller knows
 *     whether it is idempotent).
 * Every command names the key that routes it; a command of several keys
 * must keep them in one slot (hash tags), as ours do. Not thread-safe: one
 * rconn per thread.
 */
#ifndef LJ_COMMON_RCONN_H
#define LJ_COMMON_RCONN_H

#include <stddef.h>

#include <hiredis/hiredis.h>

typedef struct rconn rconn;

typedef struct rconn_opts {
    const char *host;           /* one Redis; ignored when 'seeds' is set */
    int port;
    const char *seeds;          /* "host:port,..." of a cluster, or NULL/"" */
    const char *password;       /* "" or NULL: no AUTH */
    int connect_ms;             /* > 0 */
    int timeout_ms;             /* per command; 0: none */
} rconn_opts;

/* Connects to the server, or to a seed and learns the slot map. The
 * options' strings are copied. NULL with a reason in 'err' (never the
 * password). */
rconn *rconn_open(const rconn_opts *o, char *err, size_t errlen);

void rconn_close(rconn *c);

/* Runs 'argc' NUL-terminated strings 'argv' on the node serving 'key' (any
 * node when 'key' is NULL: for commands without a key). The reply (caller
 * frees), an error reply included, or NULL when no reply came (see above:
 * the command may have run only when it was written). */
redisReply *rconn_command(rconn *c, const char *key, int argc, const char **argv);

/* What the last NULL was about; static or owned by 'c'. */
const char *rconn_errstr(const rconn *c);

/* 1 when the last command got no reply (until one does): the caller backs
 * off before the next; 'c' reconnects by itself when it is used again. */
int rconn_broken(const rconn *c);

/* 1 when 'c' talks to a cluster. */
int rconn_is_cluster(const rconn *c);

/* Counters, for /metrics and tests: redirects followed, map refreshes. */
typedef struct rconn_counts {
    unsigned long long moved;
    unsigned long long ask;
    unsigned long long retries;
    unsigned long long refreshes;
} rconn_counts;
void rconn_get_counts(const rconn *c, rconn_counts *out);

#endif
