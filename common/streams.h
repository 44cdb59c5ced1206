/* streams.h -- stream and group names, and the device hash (SPEC §3, §4).
 *
 * Names carry the configured prefix so several environments can share one
 * Redis: prefix "staging:" gives "staging:health_data_stream". The device
 * hash (FNV-1a, 32 bit) is stable across processes and machines: gray-release
 * routing and shard choice depend on it. Pure functions.
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
/* The "message_type" field of entries of 'kind' ("health_data"); static string. */
const char *stream_message_type(stream_kind kind);
/* Compares stream entry IDs "ms-seq" numerically: <0, 0 or >0. An
 * unparsable ID compares equal to anything (callers then do nothing). */
int stream_id_cmp(const char *a, const char *b);

/* FNV-1a hash of 'n' bytes of 'sn'. */
uint32_t stream_hash(const char *sn, size_t n);

#endif
