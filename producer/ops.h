/* ops.h -- operations endpoints (SPEC §7).
 *
 * Every answer is a superset of the old service's shape (its scripts and
 * monitors read these unmodified): the old keys with the old types, ours
 * beside them (docs/api.md, docs/decisions.md).
 *
 *   GET /api/health          Redis and PostgreSQL reachable; 200 while at
 *                            least one path can store uploads, else 503.
 *                            Old: status healthy|unhealthy, ISO timestamp,
 *                            error; ours: state, redis, postgres, ratio
 *   GET /api/stream_health   old: healthy (Redis up and every stream's
 *                            consumer group present), epoch timestamp, the
 *                            stream names, error; 503 when Redis is down.
 *                            Ours: link state, ratio, lengths, flow control
 *   GET /api/stream_stats    per stream: length, dead letters, groups with
 *                            lag and pending, consumers with idle time; old:
 *                            stream_stats, consumer_stats, epoch timestamp
 *   GET /api/stream_metrics  per path requests, qps, avg/p95 ms, error rate %;
 *                            per stream the conservation identity (ledger.h)
 *   GET /api/stats           rows created today in --timezone: records,
 *                            active devices and users, alerts; the newest 10
 *                            alerts (LIMIT 10, no per-device list)
 *   GET /metrics             Prometheus text
 *   GET /api/trace/...       where an upload is now (admin)
 *
 * With stream shards (SPEC §3) every Redis figure is read from every shard,
 * each on its master (the pool thread's rconn), and summed under the old
 * keys and plain names; each shard's detail is under "shards" (ours).
 *
 * Queries needing several round trips run on a pool thread with its own
 * connections; the loop only formats nothing and waits for nothing. Each
 * has a deadline (--pool-request-timeout-ms; /api/health its own): past it
 * the request is answered 503 with Retry-After and the late result dropped.
 */
#ifndef LJ_PRODUCER_OPS_H
#define LJ_PRODUCER_OPS_H

#include <uv.h>

#include "config.h"
#include "gray.h"
#include "http_server.h"
#include "ledger.h"
#include "rcluster.h"

/* Answers within 'cfg'->health_timeout_ms: a ping not answered by then
 * (hung PostgreSQL, or no free pool thread) reports PostgreSQL down. */
void ops_health(uv_loop_t *loop, const lj_config *cfg, rcluster *link, gray *g, http_request *req);
void ops_stream_health(uv_loop_t *loop, const lj_config *cfg, rcluster *link, gray *g,
                       http_request *req);
void ops_stream_stats(uv_loop_t *loop, const lj_config *cfg, http_request *req);
void ops_stream_metrics(http_request *req, const ledger *l);
/* At most one statistics query in flight per process, so these
 * unauthenticated queries take at most one pool thread from the legacy
 * writes: for 'cfg'->stats_cache_ms after a query, requests get its answer;
 * past that, while the next query runs, others get 503 with Retry-After. */
void ops_stats(uv_loop_t *loop, const lj_config *cfg, http_request *req);
/* Frees the statistics cache; at exit, after the loops. */
void ops_cleanup(void);
void ops_metrics(http_request *req, const ledger *l);

/* GET /api/trace/<stream_id> or /api/trace?device_sn=..&ts=<ms> (admin):
 * where an upload is now: stored (rows, commit time), pending (consumer,
 * idle ms, deliveries), dead_lettered (reason), in_stream (not yet
 * delivered) or unknown. 'stream_id' is the path's last part, or "". */
void ops_trace(uv_loop_t *loop, const lj_config *cfg, http_request *req, const char *stream_id);

#endif
