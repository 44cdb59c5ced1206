#include "metrics.h"

#include <math.h>

#include "err.h"

static const double bounds[METRICS_BUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                               0.05,   0.1,   0.25,   0.5,   1.0,  10.0};

void metrics_hist_observe(metrics_hist *h, double seconds)
{
    int i;

    for (i = 0; i < METRICS_BUCKETS && seconds > bounds[i]; i++)
        ;
    atomic_fetch_add_explicit(&h->buckets[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_us, (unsigned long long)(seconds * 1e6),
                              memory_order_relaxed);
}

double metrics_hist_bound(int i)
{
    return bounds[i];
}

double metrics_hist_quantile(const metrics_hist *h, double q)
{
    unsigned long long total = atomic_load(&h->count);
    unsigned long long seen = 0;
    unsigned long long rank;
    int i;

    if (total == 0)
        return 0;
    rank = (unsigned long long)ceil(q * (double)total);
    for (i = 0; i < METRICS_BUCKETS; i++) {
        seen += atomic_load(&h->buckets[i]);
        if (seen >= rank)
            return bounds[i];
    }
    return bounds[METRICS_BUCKETS - 1];
}

int metrics_write_head(lj_buf *out, const char *name, const char *type, const char *help)
{
    return lj_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

int metrics_write_value(lj_buf *out, const char *name, const char *labels, double value)
{
    if (*labels)
        return lj_buf_printf(out, "%s{%s} %.17g\n", name, labels, value);
    return lj_buf_printf(out, "%s %.17g\n", name, value);
}

int metrics_write_hist(lj_buf *out, const char *name, const char *labels,
                       const metrics_hist *h)
{
    const char *sep = *labels ? "," : "";
    unsigned long long cum = 0;
    int i;

    for (i = 0; i <= METRICS_BUCKETS; i++) {
        cum += atomic_load(&h->buckets[i]);
        if (i < METRICS_BUCKETS) {
            if (lj_buf_printf(out, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep,
                              bounds[i], cum) != 0)
                return LJ_ENOMEM;
        } else if (lj_buf_printf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep,
                                 cum) != 0) {
            return LJ_ENOMEM;
        }
    }
    if (lj_buf_printf(out, "%s_sum%s%s%s %.6f\n", name, *labels ? "{" : "", labels,
                      *labels ? "}" : "", (double)atomic_load(&h->sum_us) / 1e6) != 0)
        return LJ_ENOMEM;
    return lj_buf_printf(out, "%s_count%s%s%s %llu\n", name, *labels ? "{" : "", labels,
                         *labels ? "}" : "", atomic_load(&h->count));
}
