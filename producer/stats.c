#include "stats.h"

#include <stdio.h>
#include <time.h>

#include "clock.h"
#include "err.h"
#include "metrics.h"

#define STATUS_CLASSES 5    /* 1xx .. 5xx */

typedef struct path_stats {
    atomic_ullong requests;
    atomic_ullong errors;
    metrics_hist latency;
} path_stats;

stats_faults stats_fault;

static atomic_ullong responses[STATS_ROUTE_COUNT][STATUS_CLASSES];
static metrics_hist route_latency[STATS_ROUTE_COUNT];
static path_stats paths[STATS_PATHS];
static atomic_llong last_stream_error_s;   /* epoch s of the last stream-path failure, 0: none */
static struct timespec started;

static const char *const route_names[] = {
#define XX(id, path) path,
    STATS_ROUTES(XX)
#undef XX
};

static const char *const path_names[STATS_PATHS] = {"stream", "traditional"};

void stats_init(void)
{
    clock_gettime(CLOCK_MONOTONIC, &started);
}

void stats_response(int route, int status, double seconds)
{
    int cls = status / 100 - 1;

    if (route < 0 || route >= STATS_ROUTE_COUNT || cls < 0 || cls >= STATUS_CLASSES)
        return;
    atomic_fetch_add_explicit(&responses[route][cls], 1, memory_order_relaxed);
    metrics_hist_observe(&route_latency[route], seconds);
    if (status == 503)
        atomic_fetch_add_explicit(&stats_fault.unavailable, 1, memory_order_relaxed);
}

void stats_path(int path, int ok, double seconds)
{
    atomic_fetch_add_explicit(&paths[path].requests, 1, memory_order_relaxed);
    if (!ok)
        atomic_fetch_add_explicit(&paths[path].errors, 1, memory_order_relaxed);
    if (!ok && path == STATS_STREAM)
        atomic_store_explicit(&last_stream_error_s, (long long)time(NULL), memory_order_relaxed);
    metrics_hist_observe(&paths[path].latency, seconds);
}

void stats_stream_counts(unsigned long long *added, unsigned long long *failed,
                         long long *last_failure_s)
{
    unsigned long long n = atomic_load(&paths[STATS_STREAM].requests);

    *failed = atomic_load(&paths[STATS_STREAM].errors);
    *added = n > *failed ? n - *failed : 0;
    *last_failure_s = atomic_load(&last_stream_error_s);
}

static double uptime(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - started.tv_sec) + (double)(t.tv_nsec - started.tv_nsec) / 1e9;
}

int stats_render_prometheus(lj_buf *out)
{
    char labels[128];
    int r;
    int c;
    int p;

    metrics_write_head(out, "ljwx_http_requests_total", "counter",
                       "HTTP responses by path and status class.");
    for (r = 0; r < STATS_ROUTE_COUNT; r++)
        for (c = 0; c < STATUS_CLASSES; c++) {
            snprintf(labels, sizeof(labels), "path=\"%s\",status=\"%dxx\"", route_names[r], c + 1);
            metrics_write_value(out, "ljwx_http_requests_total", labels,
                                (double)atomic_load(&responses[r][c]));
        }
    metrics_write_head(out, "ljwx_http_request_seconds", "histogram",
                       "Time from a complete request to its response, by path.");
    for (r = 0; r < STATS_ROUTE_COUNT; r++) {
        snprintf(labels, sizeof(labels), "path=\"%s\"", route_names[r]);
        metrics_write_hist(out, "ljwx_http_request_seconds", labels, &route_latency[r]);
    }
    metrics_write_head(out, "ljwx_uploads_total", "counter",
                       "Uploads by storage path (stream, traditional) and outcome.");
    for (p = 0; p < STATS_PATHS; p++) {
        snprintf(labels, sizeof(labels), "path=\"%s\",outcome=\"ok\"", path_names[p]);
        metrics_write_value(out, "ljwx_uploads_total", labels,
                            (double)(atomic_load(&paths[p].requests) -
                                     atomic_load(&paths[p].errors)));
        snprintf(labels, sizeof(labels), "path=\"%s\",outcome=\"error\"", path_names[p]);
        metrics_write_value(out, "ljwx_uploads_total", labels,
                            (double)atomic_load(&paths[p].errors));
    }
    metrics_write_head(out, "ljwx_stream_xadd_errors_total", "counter",
                       "XADDs that Redis refused or did not answer.");
    metrics_write_value(out, "ljwx_stream_xadd_errors_total", "",
                        (double)atomic_load(&stats_fault.xadd_errors));
    metrics_write_head(out, "ljwx_fallbacks_total", "counter",
                       "Routed uploads sent to the legacy path because the stream failed.");
    metrics_write_value(out, "ljwx_fallbacks_total", "",
                        (double)atomic_load(&stats_fault.fallbacks));
    metrics_write_head(out, "ljwx_backpressure_total", "counter",
                       "Uploads turned away from a stream over its high watermark.");
    metrics_write_value(out, "ljwx_backpressure_total", "",
                        (double)atomic_load(&stats_fault.backpressure));
    metrics_write_head(out, "ljwx_unavailable_total", "counter", "503 responses.");
    metrics_write_value(out, "ljwx_unavailable_total", "",
                        (double)atomic_load(&stats_fault.unavailable));
    metrics_write_head(out, "ljwx_send_timeout_closes_total", "counter",
                       "Connections closed because their unsent answers stayed above "
                       "--max-unsent-bytes for --send-timeout-ms.");
    metrics_write_value(out, "ljwx_send_timeout_closes_total", "",
                        (double)atomic_load(&stats_fault.send_timeouts));
    metrics_write_head(out, "ljwx_open_connections", "gauge", "Open client connections.");
    return metrics_write_value(out, "ljwx_open_connections", "",
                               (double)atomic_load(&stats_fault.open_connections));
}

/* ,"latency_le_ms":[...],"latency_counts":[...]: the path's histogram since
 * start, one count per bucket (the last above the last bound), so a reader
 * can take the difference of two answers for a windowed quantile. */
static int render_latency_buckets(lj_buf *out, const metrics_hist *h)
{
    int i;

    if (lj_buf_puts(out, ",\"latency_le_ms\":[") != 0)
        return LJ_ENOMEM;
    for (i = 0; i < METRICS_BUCKETS; i++)
        if (lj_buf_printf(out, "%s%g", i ? "," : "", metrics_hist_bound(i) * 1000.0) != 0)
            return LJ_ENOMEM;
    if (lj_buf_puts(out, "],\"latency_counts\":[") != 0)
        return LJ_ENOMEM;
    for (i = 0; i <= METRICS_BUCKETS; i++)
        if (lj_buf_printf(out, "%s%llu", i ? "," : "", atomic_load(&h->buckets[i])) != 0)
            return LJ_ENOMEM;
    return lj_buf_puts(out, "]}") != 0 ? LJ_ENOMEM : 0;
}

int stats_render_summary(lj_buf *out)
{
    double up = uptime();
    int p;

    if (lj_buf_puts(out, "{") != 0)
        return LJ_ENOMEM;
    for (p = 0; p < STATS_PATHS; p++) {
        unsigned long long n = atomic_load(&paths[p].requests);
        unsigned long long e = atomic_load(&paths[p].errors);
        double sum_ms = (double)atomic_load(&paths[p].latency.sum_us) / 1000.0;

        if (lj_buf_printf(out,
                          "%s\"%s\":{\"requests\":%llu,\"errors\":%llu,\"qps\":%.2f,"
                          "\"avg_response_time\":%.3f,\"p95_response_time\":%.3f,"
                          "\"error_rate\":%.3f",
                          p ? "," : "", path_names[p], n, e, up > 0 ? (double)n / up : 0.0,
                          n ? sum_ms / (double)n : 0.0,
                          metrics_hist_quantile(&paths[p].latency, 0.95) * 1000.0,
                          n ? 100.0 * (double)e / (double)n : 0.0) != 0 ||
            render_latency_buckets(out, &paths[p].latency) != 0)
            return LJ_ENOMEM;
    }
    return lj_buf_puts(out, "}") != 0 ? LJ_ENOMEM : 0;
}

int stats_render_stream_metrics(lj_buf *out)
{
    int64_t ms = clock_wall_ms();
    char stamp[CLOCK_ISO_MAX];

    if (lj_buf_puts(out, "{\"summary\":") != 0 || stats_render_summary(out) != 0)
        return LJ_ENOMEM;
    clock_iso_at(ms, stamp, sizeof(stamp));
    return lj_buf_printf(out, ",\"duration_seconds\":%.1f,\"timestamp\":%lld.%03d,\"time\":\"%s\"}",
                         uptime(), (long long)(ms / 1000), (int)(ms % 1000), stamp);
}
