/* kinds.h -- the one table of stream kinds (health, device info, event).
 *
 * Everything that differs between the kinds is a row of this table,
 * indexed by stream_kind: the Redis names (read through streams.h, which
 * applies the prefix), what an operator calls the kind, how a report body
 * is parsed, how a value is encoded for and decoded from a stream entry,
 * how a batch of values is stored, and how a value is freed. Code that
 * handles "any kind" calls through the row instead of switching on the
 * kind, so a new kind (or a shard of one) is one row. The table is constant
 * and shared by every thread.
 */
#ifndef LJ_COMMON_KINDS_H
#define LJ_COMMON_KINDS_H

#include <stddef.h>

#include <libpq-fe.h>

#include "buf.h"
#include "enrich.h"
#include "record.h"
#include "report.h"
#include "store.h"
#include "streams.h"

/* One decoded value of any kind; which member is set follows the kind. */
typedef union kind_value {
    rec_batch health;       /* STREAM_HEALTH: the records of one upload */
    rep_device device;      /* STREAM_DEVICE */
    rep_event event;        /* STREAM_EVENT */
} kind_value;

typedef struct kind_ops {
    const char *key;        /* short name for tools and --kind: "health" */
    const char *stream;     /* stream name without prefix: "health_data_stream" */
    const char *group;      /* consumer group without prefix: "health_processors" */
    const char *type;       /* the entries' "message_type" field: "health_data" */
    const char *what;       /* in messages to clients and logs: "health data" */
    const char *undecodable;    /* dead-letter reason when decode fails */
    int partitioned;        /* rows go to monthly partitions (upkeep creates them) */
    /* Validates a report body, as rep_device_parse(). NULL for health:
     * uploads of records have their own shapes (rec_parse_body). */
    int (*parse)(const char *body, size_t len, const rec_opts *opts, kind_value *out,
                 const char **msg);
    /* The entry payload of 'v' (appended to 'out'): 0 or LJ_ENOMEM. */
    int (*encode)(const kind_value *v, lj_buf *out);
    /* Reads a payload written by encode() into 'out' (to be cleaned up
     * only on 0); LJ_EPARSE for anything else, including a health list with
     * no record. 'batch_id': the entry's batch_id field, or NULL (health
     * keeps it when it fits, the others ignore it). */
    int (*decode)(const char *json, size_t len, const char *batch_id, kind_value *out);
    /* The device serial of a value. */
    const char *(*device_sn)(const kind_value *v);
    /* Stores 'n' values, v[i] read from entry ids[i] of 'stream' (shard
     * 'shard' of its kind), in one transaction; errors as store_health_batch(). */
    int (*store)(PGconn *pg, enrich_cache *cache, const char *stream, unsigned shard,
                 kind_value *const *v, const char *const *ids, size_t n, store_stats *st);
    /* Encodes 'v' (entry 'id') as store() will, into 'scratch' (reset per
     * row), and discards it: a crash the data causes there happens before
     * the store's round trips (NULL: nothing to rehearse). */
    void (*rehearse)(const kind_value *v, const char *id, lj_buf *scratch);
    /* Prepares the statements store() needs on a new connection (NULL: none). */
    int (*prepare)(PGconn *pg);
    void (*cleanup)(kind_value *v);
} kind_ops;

/* The row of 'kind' (0 <= kind < STREAM_KINDS). */
const kind_ops *kind_get(stream_kind kind);

#endif
