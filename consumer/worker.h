/* worker.h -- one consumer worker: who it is and what it serves.
 *
 * Each worker runs on its own thread (loop.h) with its own Redis and
 * PostgreSQL connections and serves one shard of one stream (health,
 * device info or events). This is what the parts of that loop (session,
 * claim, handle, settle, upkeep, readahead) share about it: its identity,
 * its stream and its counters, and how it reads.
 */
#ifndef LJ_CONSUMER_WORKER_H
#define LJ_CONSUMER_WORKER_H

#include <stdatomic.h>
#include <stddef.h>

#include "config.h"
#include "metrics.h"
#include "rconn.h"
#include "streams.h"

/* Counted by the worker, read by the status thread. */
typedef struct worker_stats {
    atomic_ullong batches;
    atomic_ullong entries_acked;
    atomic_ullong rows_inserted;
    atomic_ullong duplicates_skipped;
    atomic_ullong dead_lettered;
    atomic_ullong entries_gone;     /* trimmed while pending: acknowledged, not stored */
    atomic_ullong claimed;
    atomic_ullong unbound_records;
    atomic_ullong alerts_raised;
    atomic_ullong retries;          /* batches that failed and will be read again */
    atomic_ullong partitions_dropped;   /* by retention (retention.h) */
    atomic_ullong retention_failures;   /* retention runs that failed (archive, drop) */
    atomic_llong lag;               /* of this worker's group, from its last upkeep; -1 unknown */
    atomic_llong pending;
    atomic_llong length;
    atomic_llong batch_count;       /* COUNT of the next read (batchsize.h) */
    atomic_llong partitions_ahead;  /* months after this one with a partition (upkeep.c); -1 unknown */
    atomic_int redis_up;
    atomic_int pg_up;
    metrics_hist batch_seconds;     /* arrival to acknowledgement */
} worker_stats;

typedef struct worker {
    int index;              /* unique in this process: the consumer name's last part */
    stream_kind kind;
    unsigned shard;         /* of kind's stream: 0 .. --stream-shards - 1 */
    const lj_config *cfg;
    const atomic_int *stop;
    char name[160];         /* consumer name: host:pid:index */
    char host[96];          /* worker_host() */
    worker_stats stats;
} worker;

/* The host part of this process's consumer names: the host name, '~' and
 * a machine key, 8 hex digits of the FNV-1a hash of "<boot id>|<PID
 * namespace>" (/proc/sys/kernel/random/boot_id, the link /proc/self/ns/pid).
 * Containers that share a host name, or a machine after a reboot, get other
 * keys, so a consumer whose host part equals ours provably runs where our
 * pids mean the same processes: kill(pid, 0) tells whether it is alive. */
void worker_host(char *out, size_t len);

/* The name of the stream (shard) 'w' reads, prefixed (streams.h). */
void worker_stream(const worker *w, char *out, size_t len);

/* Prepares 'w' as worker 'index' of this process, serving shard 'shard'
 * of the stream of 'kind'. */
void worker_init(worker *w, int index, stream_kind kind, unsigned shard, const lj_config *cfg,
                 const atomic_int *stop);

/* How a worker's connections reach Redis (one server or the cluster): the
 * command timeout above --block-ms, so a blocked read is not cut short. */
void worker_redis_opts(const worker *w, rconn_opts *o);

/* XREADGROUP of at most 'count' entries of 'stream' for 'w''s consumer
 * name in 'group', from 'id' ("0"..: its pending entries, ">": new ones),
 * blocking --block-ms; the reply as rconn_command(). */
redisReply *worker_xreadgroup(rconn *c, const worker *w, const char *group, const char *stream,
                              int count, const char *id);

#endif
