#include "flowctl.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include <uv.h>

#include "err.h"
#include "ratelimit.h"

static const char *const dep_names[FLOWCTL_DEPS] = {"redis", "postgres"};

static struct {
    const lj_config *cfg;
    ratelimit *devices;         /* NULL: off */
    ratelimit *addrs;           /* NULL: off */
    breaker *breakers[FLOWCTL_DEPS];
    atomic_llong inflight;
    atomic_ullong limited_records;
    atomic_ullong limited_uploads;  /* answered 429 by the device limit */
    atomic_ullong limited_addr;     /* answered 429 by the address limit */
    atomic_ullong inflight_refused;
} fc;

int flowctl_init(const lj_config *cfg)
{
    int i;

    memset(&fc, 0, sizeof(fc));
    fc.cfg = cfg;
    if (cfg->device_rate > 0 &&
        (fc.devices = ratelimit_new((unsigned)cfg->device_rate, (unsigned)cfg->device_burst,
                                    (size_t)cfg->rate_table_slots)) == NULL)
        goto fail;
    if (cfg->addr_rate > 0 &&
        (fc.addrs = ratelimit_new((unsigned)cfg->addr_rate, (unsigned)cfg->addr_burst,
                                  (size_t)cfg->rate_table_slots)) == NULL)
        goto fail;
    for (i = 0; i < FLOWCTL_DEPS; i++)
        if ((fc.breakers[i] = breaker_new(dep_names[i], (unsigned)cfg->breaker_failures,
                                          (unsigned)cfg->breaker_cooldown_ms,
                                          (unsigned)cfg->breaker_max_cooldown_ms)) == NULL)
            goto fail;
    return 0;
fail:
    flowctl_cleanup();
    return LJ_ENOMEM;
}

void flowctl_cleanup(void)
{
    int i;

    ratelimit_free(fc.devices);
    ratelimit_free(fc.addrs);
    for (i = 0; i < FLOWCTL_DEPS; i++)
        breaker_free(fc.breakers[i]);
    memset(&fc, 0, sizeof(fc));
}

static int take(ratelimit *rl, const char *key, uint64_t *retry_ms)
{
    uint64_t retry_ns;

    if (rl == NULL || ratelimit_take(rl, key, strlen(key), uv_hrtime(), &retry_ns))
        return 1;
    *retry_ms = (retry_ns + 999999) / 1000000;
    return 0;
}

int flowctl_addr_allow(const char *addr, uint64_t *retry_ms)
{
    if (take(fc.addrs, addr, retry_ms))
        return 1;
    atomic_fetch_add(&fc.limited_addr, 1);
    return 0;
}

int flowctl_device_allow(const char *sn, uint64_t *retry_ms)
{
    return take(fc.devices, sn, retry_ms);
}

void flowctl_count_limited(uint64_t records, int whole_upload)
{
    atomic_fetch_add(&fc.limited_records, records);
    if (whole_upload)
        atomic_fetch_add(&fc.limited_uploads, 1);
}

int flowctl_enter(void)
{
    long long cap = fc.cfg->max_inflight;

    if (atomic_fetch_add(&fc.inflight, 1) < cap || cap == 0)
        return 1;
    atomic_fetch_sub(&fc.inflight, 1);
    atomic_fetch_add(&fc.inflight_refused, 1);
    return 0;
}

void flowctl_leave(void)
{
    atomic_fetch_sub(&fc.inflight, 1);
}

breaker *flowctl_breaker(enum flowctl_dep dep)
{
    return fc.breakers[dep];
}

void flowctl_retry_after(uint64_t ms, char *out, size_t len)
{
    uint64_t s = (ms + 999) / 1000;

    snprintf(out, len, "Retry-After: %llu\r\n", (unsigned long long)(s ? s : 1));
}

static void usage_of(ratelimit *rl, ratelimit_usage *u)
{
    memset(u, 0, sizeof(*u));
    if (rl)
        ratelimit_usage_get(rl, u);
}

static int render_limit_json(lj_buf *out, const char *name, ratelimit *rl, int rate, int burst)
{
    ratelimit_usage u;

    usage_of(rl, &u);
    return lj_buf_printf(out, "\"%s\":{\"rate_per_s\":%d,\"burst\":%d,\"tracked\":%zu,"
                              "\"slots\":%zu,\"evicted_busy\":%llu}",
                         name, rl ? rate : 0, burst, u.tracked, u.slots,
                         (unsigned long long)u.evicted_busy);
}

static int render_breaker_json(lj_buf *out, int dep, uint64_t now)
{
    breaker_snapshot s;

    breaker_snapshot_get(fc.breakers[dep], now, &s);
    return lj_buf_printf(out, "%s\"%s\":{\"state\":\"%s\",\"consecutive_failures\":%u,"
                              "\"opens\":%llu,\"refused\":%llu,\"retry_in_ms\":%llu}",
                         dep ? "," : "", dep_names[dep], breaker_state_name(s.state),
                         s.consecutive_failures, (unsigned long long)s.opens,
                         (unsigned long long)s.refused, (unsigned long long)s.retry_in_ms);
}

int flowctl_render_json(lj_buf *out)
{
    const lj_config *c = fc.cfg;
    uint64_t now = uv_hrtime();
    int dep;

    if (lj_buf_puts(out, ",\"flow_control\":{") ||
        render_limit_json(out, "device_limit", fc.devices, c->device_rate, c->device_burst) ||
        lj_buf_puts(out, ",") ||
        render_limit_json(out, "address_limit", fc.addrs, c->addr_rate, c->addr_burst) ||
        lj_buf_printf(out, ",\"rate_limited_records\":%llu,\"rate_limited_uploads\":%llu,"
                           "\"address_limited_uploads\":%llu,\"inflight\":%lld,"
                           "\"max_inflight\":%d,\"inflight_refused\":%llu,\"breakers\":{",
                      (unsigned long long)atomic_load(&fc.limited_records),
                      (unsigned long long)atomic_load(&fc.limited_uploads),
                      (unsigned long long)atomic_load(&fc.limited_addr),
                      (long long)atomic_load(&fc.inflight), c->max_inflight,
                      (unsigned long long)atomic_load(&fc.inflight_refused)))
        return LJ_ENOMEM;
    for (dep = 0; dep < FLOWCTL_DEPS; dep++)
        if (render_breaker_json(out, dep, now))
            return LJ_ENOMEM;
    return lj_buf_puts(out, "}}");
}

/* One metric family over both breakers: field 0 state, 1 opens, 2 refused. */
static int render_breaker_family(lj_buf *out, const char *name, const char *type,
                                 const char *help, int field, uint64_t now)
{
    int dep;

    if (lj_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type))
        return LJ_ENOMEM;
    for (dep = 0; dep < FLOWCTL_DEPS; dep++) {
        breaker_snapshot s;
        unsigned long long v;

        breaker_snapshot_get(fc.breakers[dep], now, &s);
        v = field == 0 ? (unsigned long long)s.state : field == 1 ? s.opens : s.refused;
        if (lj_buf_printf(out, "%s{dependency=\"%s\"} %llu\n", name, dep_names[dep], v))
            return LJ_ENOMEM;
    }
    return 0;
}

int flowctl_render_prometheus(lj_buf *out)
{
    ratelimit_usage dev;
    ratelimit_usage addr;
    uint64_t now = uv_hrtime();

    usage_of(fc.devices, &dev);
    usage_of(fc.addrs, &addr);
    if (lj_buf_printf(
            out,
            "# HELP ljwx_rate_limited_records_total Records rejected as rate_limited.\n"
            "# TYPE ljwx_rate_limited_records_total counter\n"
            "ljwx_rate_limited_records_total %llu\n"
            "# HELP ljwx_rate_limited_uploads_total Uploads answered 429, by limit.\n"
            "# TYPE ljwx_rate_limited_uploads_total counter\n"
            "ljwx_rate_limited_uploads_total{limit=\"device\"} %llu\n"
            "ljwx_rate_limited_uploads_total{limit=\"address\"} %llu\n"
            "# HELP ljwx_rate_tracked_keys Keys whose bucket is held, by limit.\n"
            "# TYPE ljwx_rate_tracked_keys gauge\n"
            "ljwx_rate_tracked_keys{limit=\"device\"} %zu\n"
            "ljwx_rate_tracked_keys{limit=\"address\"} %zu\n"
            "# HELP ljwx_inflight_uploads Uploads waiting on Redis or PostgreSQL.\n"
            "# TYPE ljwx_inflight_uploads gauge\n"
            "ljwx_inflight_uploads %lld\n"
            "# HELP ljwx_inflight_refused_total Uploads answered 503 by the in-flight cap.\n"
            "# TYPE ljwx_inflight_refused_total counter\n"
            "ljwx_inflight_refused_total %llu\n",
            (unsigned long long)atomic_load(&fc.limited_records),
            (unsigned long long)atomic_load(&fc.limited_uploads),
            (unsigned long long)atomic_load(&fc.limited_addr), dev.tracked, addr.tracked,
            (long long)atomic_load(&fc.inflight),
            (unsigned long long)atomic_load(&fc.inflight_refused)))
        return LJ_ENOMEM;
    return render_breaker_family(out, "ljwx_breaker_state", "gauge",
                                 "Circuit breaker: 0 closed, 1 open, 2 half open.", 0, now) ||
                   render_breaker_family(out, "ljwx_breaker_opens_total", "counter",
                                         "Times the circuit breaker opened.", 1, now) ||
                   render_breaker_family(out, "ljwx_breaker_refused_total", "counter",
                                         "Calls refused by an open circuit breaker.", 2, now)
               ? LJ_ENOMEM
               : 0;
}
