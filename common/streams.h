/* streams.h -- stream and group names, and the device hash (SPEC §3, §4).
 *
 * Names carry the configured prefix so several environments can share one
 * Redis: prefix "staging:" gives "staging:health_data_stream". The device
 * hash (FNV-1a, 32 bit) is stable across processes and machines: gray-release
 * routing and shard choice depend on it. Pure functions. The stream, group
 * and message type names are columns of the table of kinds (kinds.h).
 */
#ifndef LJ_COMMON_STREAMS_H
#define LJ_COMMON_STREAMS_H

#include <stddef.h>
#include <stdint.h>

typedef enum stream_kind {
    STREAM_HEALTH = 0,
    STREAM_DEVICE,
    STREAM_EVENT,
    STREAM_KINDS
} stream_kind;

#define STREAM_NAME_MAX 128

/* Writes prefix + the stream name of 'kind' ("health_data_stream") to 'out'. */
void stream_name(char *out, size_t outlen, const char *prefix, stream_kind kind);
/* Writes prefix + the consumer group of 'kind' ("health_processors"). */
void stream_group(char *out, size_t outlen, const char *prefix, stream_kind kind);
/* Shards (SPEC §3): the stream of 'kind' is split in <prefix><name>:{k},
 * k in 0 .. nshards-1, the braces a Redis Cluster hash tag (the side keys
 * of a shard share its slot), when 'tagged'; else it is the plain name of
 * stream_name(). stream_tagged() says which: tags with more than one shard,
 * and always on a cluster (a script names a stream and its side keys, which
 * must share a slot). Each shard has the kind's group name. */
#define STREAM_SHARDS_MAX 256
int stream_tagged(unsigned nshards, int cluster);
void stream_shard_name(char *out, size_t outlen, const char *prefix, stream_kind kind,
                       unsigned shard, int tagged);
/* The shard of device serial 'sn' ('n' bytes) among 'nshards' (0 when
 * 'nshards' <= 1): stable, spread evenly, and independent of the
 * gray-release position (stream_hash(sn) mod 10000), so a shard does not
 * hold only stream-path or only legacy-path devices. */
unsigned stream_shard_of(const char *sn, size_t n, unsigned nshards);
/* The shards one consumer process serves (--serve-shards): 'spec' "" for
 * every one, else shards K and ranges K-L, comma-separated ("0,3", "2-5").
 * Sets set[k] to 1 for each served k < 'nshards', 0 for the others. 0, or
 * -1 with the reason in 'err' for a shard outside 0..nshards-1, one named
 * twice, or anything that is not such a list. */
int stream_shard_set(const char *spec, unsigned nshards, unsigned char *set, char *err,
                     size_t errlen);
/* The "message_type" field of entries of 'kind' ("health_data"); static string. */
const char *stream_message_type(stream_kind kind);
/* Compares stream entry IDs "ms-seq" numerically: <0, 0 or >0. An
 * unparsable ID compares equal to anything (callers then do nothing). */
int stream_id_cmp(const char *a, const char *b);

/* Keys that live beside a stream. Each is the stream's name and a suffix,
 * so with a hash tag in the name they share its Redis Cluster slot:
 *   <stream>:dead      dead letters (SPEC §5.1)
 *   <stream>:attempts  hash: entry ID -> attempts that ended in a crash
 *   <stream>:counts    hash: what the consumers did with its entries
 *                      (STREAM_COUNT_* fields), for the conservation check */
typedef enum stream_side {
    STREAM_SIDE_DEAD = 0,
    STREAM_SIDE_ATTEMPTS,
    STREAM_SIDE_COUNTS,
    STREAM_SIDES
} stream_side;

#define STREAM_KEY_MAX (STREAM_NAME_MAX + 16)

/* Writes the key 'side' of 'stream' ("health_data_stream:dead") to 'out'. */
void stream_side_key(char *out, size_t outlen, const char *stream, stream_side side);
/* Writes prefix + "alert_stream" to 'out'. */
void stream_alert_name(char *out, size_t outlen, const char *prefix);

/* Gray-release control keys, shared by every producer (SPEC §4), read
 * together with one MGET on each ratio refresh:
 *   <prefix>stream_traffic_ratio  the ratio, "0" .. "1"
 *   <prefix>stream_legacy_path    "retired" while routed uploads may not
 *                                 take the legacy path; absent or "on":
 *                                 the legacy path serves (the default) */
void stream_ratio_key(char *out, size_t outlen, const char *prefix);
void stream_legacy_key(char *out, size_t outlen, const char *prefix);
#define STREAM_LEGACY_RETIRED "retired"
#define STREAM_LEGACY_ON "on"

/* Fields of a dead-letter entry, before the original entry's own fields. */
#define STREAM_DEAD_REASON "dead_reason"
#define STREAM_DEAD_ID "dead_id"
#define STREAM_DEAD_DELIVERIES "dead_deliveries"
#define STREAM_DEAD_CONSUMER "dead_consumer"

/* Fields of <stream>:counts: entries acknowledged after a commit that
 * stored at least one new row, entries whose rows were all stored already,
 * entries dead-lettered, entries found trimmed while pending. With the
 * stream's entries-added and its group's pending and lag they make the
 * conservation identity (docs/reliability.md):
 *   added = stored + duplicate + dead + gone + pending + lag */
#define STREAM_COUNT_STORED "stored"
#define STREAM_COUNT_DUPLICATE "duplicate"
#define STREAM_COUNT_DEAD "dead"
#define STREAM_COUNT_GONE "gone"
/* Outside the identity, for the old /api/stream_stats "consumer_stats":
 * batches settled after a commit (one per settle of stored entries, in the
 * same script), and batch attempts that failed (the worker retries them). */
#define STREAM_COUNT_BATCHES "batches"
#define STREAM_COUNT_ERRORS "errors"

/* Appends every name above as one JSON object to 'out' (a struct lj_buf,
 * buf.h), unprefixed (each key is the prefix and its name): per kind
 * ("health", "device", "event") its stream, group, message type and side
 * keys, then the alert stream, the control keys and their values, the
 * dead-letter fields and the counts fields. `ljwx-consumer --print-keys`
 * prints it; scripts/ljwxops.py reads its names from there, so the tools
 * and the binaries share this one list. 0 or LJ_ENOMEM. */
struct lj_buf;
int stream_keys_json(struct lj_buf *out);

/* FNV-1a hash of 'n' bytes of 'sn'. */
uint32_t stream_hash(const char *sn, size_t n);

#endif
