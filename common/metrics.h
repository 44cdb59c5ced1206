/* metrics.h -- Prometheus text exposition and lock-free histograms.
 *
 * Counters are plain atomics owned by the module that counts; this module
 * only writes them out in the text format (version 0.0.4):
 *
 *     # HELP ljwx_rows_inserted_total Rows inserted.
 *     # TYPE ljwx_rows_inserted_total counter
 *     ljwx_rows_inserted_total{stream="health_data_stream"} 42
 *
 * A histogram observes durations from any thread (relaxed atomics).
 */
#ifndef LJ_COMMON_METRICS_H
#define LJ_COMMON_METRICS_H

#include <stdatomic.h>
#include <stddef.h>

#include "buf.h"

#define METRICS_BUCKETS 12

/* Latency histogram with fixed bounds (seconds): 0.5 ms .. 10 s. */
typedef struct metrics_hist {
    atomic_ullong buckets[METRICS_BUCKETS + 1];     /* last: +Inf */
    atomic_ullong count;
    atomic_ullong sum_us;
} metrics_hist;

/* Records one observation of 'seconds'. */
void metrics_hist_observe(metrics_hist *h, double seconds);

/* The value at quantile 'q' (0..1), estimated from the buckets (upper
 * bound of the bucket it falls in); 0 when empty. */
double metrics_hist_quantile(const metrics_hist *h, double q);

/* Upper bound, in seconds, of bucket 'i' (0 .. METRICS_BUCKETS - 1); the
 * bucket after the last holds everything above it. */
double metrics_hist_bound(int i);

/* Writes "# HELP" and "# TYPE" lines for 'name'. */
int metrics_write_head(lj_buf *out, const char *name, const char *type, const char *help);

/* Writes one sample: name{labels} value. 'labels' is "" or 'k="v",...'. */
int metrics_write_value(lj_buf *out, const char *name, const char *labels, double value);

/* Writes the _bucket, _sum and _count samples of 'h' (no head). */
int metrics_write_hist(lj_buf *out, const char *name, const char *labels,
                       const metrics_hist *h);

#endif
