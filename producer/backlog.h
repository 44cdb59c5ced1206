/* backlog.h -- backpressure before loss (SPEC §3).
 *
 * Every --ratio-refresh-ms each loop reads the length of every shard of the
 * three streams (XLEN, routed to the shard's master). Consumers trim what
 * every group acknowledged, so the length is the unacknowledged backlog
 * plus at most one upkeep interval of acknowledged entries. At or above
 * --stream-high-watermark a shard is full: uploads of its devices get 503 +
 * Retry-After (or, on routed endpoints, the legacy path), so Redis never
 * has to drop or refuse anything accepted. Loop thread only.
 */
#ifndef LJ_PRODUCER_BACKLOG_H
#define LJ_PRODUCER_BACKLOG_H

#include <uv.h>

#include "config.h"
#include "rcluster.h"
#include "streams.h"

typedef struct backlog backlog;

backlog *backlog_new(uv_loop_t *loop, rcluster *link, const lj_config *cfg);
/* Stops polling; freed once no reply is outstanding and the timer closed. */
void backlog_close(backlog *b);

/* Nonzero when shard 'shard' (stream_shard_of()) of the stream of 'kind' is
 * at or above the high watermark. */
int backlog_full(const backlog *b, stream_kind kind, unsigned shard);

/* The last length read for that shard (-1 before the first reading). */
long long backlog_length(const backlog *b, stream_kind kind, unsigned shard);

#endif
