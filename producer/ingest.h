/* ingest.h -- the upload endpoints (SPEC §2, §3, §4).
 *
 * Stream path: validate, one XADD carrying the normalised payload, answer
 * 200 "accepted" only once Redis replied with the entry ID. Legacy path:
 * the same validation, then a synchronous PostgreSQL write (legacy.c),
 * answered 200 "success" after COMMIT.
 *
 *   /upload_health_data_v2      stream path always; Redis down: 503
 *   /upload_health_data         routed by the gray ratio (gray.c); when the
 *   /upload_health_data_batch   stream path fails, the legacy path instead
 *   /upload_device_info_v2      stream path (device_info_stream)
 *   /upload_common_event_v2     stream path (common_event_stream)
 *   /upload_device_info         routed by the device's serial like health;
 *   /upload_common_event        the legacy path stores them synchronously
 *
 * The XADD goes to the shard of the upload's device (streams.h
 * stream_shard_of; a batch: its first record's device) on the master of
 * its slot (rcluster.h). A shard over its high watermark (backlog.c)
 * counts as a failed stream path. Neither path able to store: 503 with
 * Retry-After. A legacy write not done within --pool-request-timeout-ms is
 * answered 503 with Retry-After and counts as a PostgreSQL failure for the
 * breaker. One ingest per loop thread; it borrows the loop's Redis link
 * (rcluster), gray and the config.
 */
#ifndef LJ_PRODUCER_INGEST_H
#define LJ_PRODUCER_INGEST_H

#include <uv.h>

#include "backlog.h"
#include "config.h"
#include "gray.h"
#include "http_server.h"
#include "rcluster.h"

typedef struct ingest ingest;

/* Returns the ingest state for one loop, or NULL when out of memory. 'cfg',
 * 'link', 'g' and 'bl' must outlive it. */
ingest *ingest_new(uv_loop_t *loop, const lj_config *cfg, rcluster *link, gray *g,
                   backlog *bl);
/* Shutdown, before the Redis link closes: from now on uploads that would start
 * storage work (a legacy write, also as a fallback) get 503, and no alert
 * is published. */
void ingest_close(ingest *in);
void ingest_free(ingest *in);

void ingest_health_v2(ingest *in, http_request *req);
void ingest_health_routed(ingest *in, http_request *req);
void ingest_health_batch(ingest *in, http_request *req);
void ingest_device_v2(ingest *in, http_request *req);
void ingest_event_v2(ingest *in, http_request *req);
void ingest_device_routed(ingest *in, http_request *req);
void ingest_event_routed(ingest *in, http_request *req);

/* Answers 503 with Retry-After and a JSON error 'msg'. */
void ingest_unavailable(http_request *req, const char *msg);

#endif
