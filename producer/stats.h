/* stats.h -- the producer's counters, for /metrics and /api/stream_metrics.
 *
 * Process-wide atomics: every loop thread counts into the same figures.
 * Per route and status class, per storage path (stream or legacy), plus the
 * fault counters operators watch during a rollout.
 */
#ifndef LJ_PRODUCER_STATS_H
#define LJ_PRODUCER_STATS_H

#include <stdatomic.h>

#include "buf.h"

/* Routes, as labelled in /metrics. */
#define STATS_ROUTES(XX)                                \
    XX(HEALTH_V2, "/upload_health_data_v2")             \
    XX(HEALTH, "/upload_health_data")                   \
    XX(HEALTH_BATCH, "/upload_health_data_batch")       \
    XX(DEVICE_V2, "/upload_device_info_v2")             \
    XX(EVENT_V2, "/upload_common_event_v2")             \
    XX(DEVICE, "/upload_device_info")                   \
    XX(EVENT, "/upload_common_event")                   \
    XX(RATIO, "/api/stream_traffic_ratio")              \
    XX(ROLLBACK, "/api/emergency_rollback")             \
    XX(LEGACY, "/api/legacy_path")                      \
    XX(API_HEALTH, "/api/health")                       \
    XX(STREAM_HEALTH, "/api/stream_health")             \
    XX(STREAM_STATS, "/api/stream_stats")               \
    XX(STREAM_METRICS, "/api/stream_metrics")           \
    XX(API_STATS, "/api/stats")                         \
    XX(METRICS, "/metrics")                             \
    XX(TRACE, "/api/trace")                             \
    XX(DASHBOARD, "/dashboard")                         \
    XX(OTHER, "other")

enum stats_route {
#define XX(id, path) STATS_R_##id,
    STATS_ROUTES(XX)
#undef XX
    STATS_ROUTE_COUNT
};

/* Where an upload was stored. */
enum stats_path { STATS_STREAM = 0, STATS_LEGACY, STATS_PATHS };

/* Fault counters. */
typedef struct stats_faults {
    atomic_ullong xadd_errors;      /* XADD refused or unanswered */
    atomic_ullong fallbacks;        /* routed uploads sent to the legacy path by a fault */
    atomic_ullong unavailable;      /* 503 answers */
    atomic_ullong backpressure;     /* uploads refused (or sent to legacy) by a full stream */
    atomic_llong open_connections;
    atomic_ullong send_timeouts;    /* connections closed: answers unread for too long */
} stats_faults;

extern stats_faults stats_fault;

/* Call once at start (the uptime clock). */
void stats_init(void);

/* One answered request on 'route' with 'status' after 'seconds'. */
void stats_response(int route, int status, double seconds);

/* One upload that went down 'path'; 'ok' when it was stored or accepted. */
void stats_path(int path, int ok, double seconds);

/* Prometheus text of every counter. */
int stats_render_prometheus(lj_buf *out);

/* The stream path's figures for the old /api/stream_stats "manager_stats": entries added
 * (stream-path uploads Redis took, every stream), failures (XADD refused or
 * unanswered, stream over its watermark) and the epoch second of the last
 * failure (0: none since start). */
void stats_stream_counts(unsigned long long *added, unsigned long long *failed,
                         long long *last_failure_s);

/* {"stream":{...},"traditional":{...}}: per path requests, errors, qps,
 * average and p95 response time (ms) and error rate (percent), and the
 * latency histogram's bucket bounds (ms) and counts, for windowed quantiles
 * (the dashboard's p95 line). Also the rollback answer's "current_metrics". */
int stats_render_summary(lj_buf *out);

/* {"summary":<stats_render_summary>,"duration_seconds":..,"timestamp":<epoch
 * s, ms fraction>,"time":"<ISO 8601 UTC>"}: the old service's shape
 * ("timestamp" a number), our ISO time beside it. */
int stats_render_stream_metrics(lj_buf *out);

#endif
