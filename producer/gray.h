/* gray.h -- the gray-release traffic ratio (SPEC §4).
 *
 * The ratio r (0..1) lives in Redis under <prefix>stream_traffic_ratio,
 * shared by every producer; each loop caches it and re-reads it every
 * --ratio-refresh-ms (500 ms), so a change reaches every instance within a
 * second. While Redis holds no value, --initial-ratio-permille applies (0:
 * everything on the legacy path until an operator raises it).
 *
 * Routing is sticky per device: a device takes the stream path when
 *
 *     fnv1a(device_sn) mod 10000 < r * 10000
 *
 * so a watch never flips between paths while r is unchanged, and raising r
 * only moves devices from legacy to stream.
 *
 * The legacy switch (<prefix>stream_legacy_path, common/streams.h) is read
 * with the ratio in the same MGET (on a Redis Cluster, where the two keys
 * live in two slots, one GET each, each sent to its key's master). While it says retired, every routed
 * upload takes the stream path whatever the ratio, and the legacy path is
 * no fallback (producer/ingest.c answers 503 instead). Until the first
 * read, and while Redis holds no value, the legacy path serves; while Redis
 * is unreachable both cached values stay as last read. Loop thread only.
 */
#ifndef LJ_PRODUCER_GRAY_H
#define LJ_PRODUCER_GRAY_H

#include <uv.h>

#include "config.h"
#include "rcluster.h"

#define GRAY_SCALE 10000    /* the ratio is held in 1/10000 */

typedef struct gray gray;

/* Starts the refresh timer on 'loop'. NULL when out of memory. */
gray *gray_new(uv_loop_t *loop, rcluster *link, const lj_config *cfg);
/* Stops the timer; freed once its handle is closed. */
void gray_close(gray *g);

/* The cached ratio, in 1/GRAY_SCALE. */
int gray_ratio(const gray *g);

/* Nonzero when the legacy path is retired (cached like the ratio). */
int gray_legacy_retired(const gray *g);

/* Nonzero when 'device_sn' takes the stream path at the cached ratio
 * (always, while the legacy path is retired). */
int gray_takes_stream(const gray *g, const char *device_sn);

/* Called with the ratio that was in force before a change (in 1/GRAY_SCALE),
 * or with 'ok' 0 when Redis did not take the change. */
typedef void (*gray_set_cb)(int ok, int old_ratio, void *arg);

/* Stores 'ratio' (1/GRAY_SCALE) in Redis for every instance and in this
 * loop's cache. 0 when sent ('cb' will run), LJ_EUNAVAIL when Redis is down. */
int gray_set(gray *g, int ratio, gray_set_cb cb, void *arg);

/* Called with the legacy switch as it was before a change (1 retired, 0
 * on), or with 'ok' 0 when Redis did not take the change. */
typedef void (*gray_legacy_cb)(int ok, int was_retired, void *arg);

/* Stores the legacy switch ('retired' 1 or 0) in Redis for every instance
 * and in this loop's cache. 0 when sent ('cb' will run), LJ_EUNAVAIL when
 * Redis is down, LJ_ENOMEM. */
int gray_set_legacy(gray *g, int retired, gray_legacy_cb cb, void *arg);

/* "0.3" for 3000: the ratio as operators write it. 'out' >= 16 bytes. */
void gray_format(int ratio, char *out, size_t len);

#endif
