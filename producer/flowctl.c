#include "flowctl.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include <uv.h>

#include "cluster.h"
#include "err.h"
#include "ratelimit.h"
#include "rcluster.h"

#define SEC 1000000000ull
#define MASTERS_MAX CLUSTER_NODES_MAX
#define MASTER_SHOWN_NS (60 * SEC)  /* asked for this recently: shown */
/* Idle this long: may go to another master. Longer than any upload's
 * outcome can take: (1 + 5 redirects) sends and a second WAIT, each within
 * --redis-timeout-ms (at most 60 s). */
#define MASTER_REUSE_NS (600 * SEC)

static const char *const dep_names[FLOWCTL_DEPS] = {"redis", "postgres"};

/* A cluster master's breaker; 'name' "" while unused. Under masters_mu. */
typedef struct master_breaker {
    char name[RCLUSTER_NAME_MAX];
    breaker *b;
    uint64_t last_ns;       /* last flowctl_master_breaker() for it */
} master_breaker;

/* A master's breaker as rendered. */
typedef struct shown_master {
    char name[RCLUSTER_NAME_MAX];
    breaker_snapshot s;
} shown_master;

static struct {
    const lj_config *cfg;
    ratelimit *devices;         /* NULL: off */
    ratelimit *addrs;           /* NULL: off */
    breaker *breakers[FLOWCTL_DEPS];
    pthread_mutex_t masters_mu;
    master_breaker masters[MASTERS_MAX];
    int nmasters;           /* entries made: MASTERS_MAX on a cluster, else 0 */
    uint64_t retired_opens;     /* counters of entries given to another master */
    uint64_t retired_refused;
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
    pthread_mutex_init(&fc.masters_mu, NULL);
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
    for (i = 0; cfg->redis_cluster[0] && i < MASTERS_MAX; i++, fc.nmasters++)
        if ((fc.masters[i].b = breaker_new("redis", (unsigned)cfg->breaker_failures,
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
    for (i = 0; i < fc.nmasters; i++)
        breaker_free(fc.masters[i].b);
    pthread_mutex_destroy(&fc.masters_mu);
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

static master_breaker *find_master(const char *name)
{
    int i;

    for (i = 0; i < fc.nmasters; i++)
        if (strcmp(fc.masters[i].name, name) == 0)
            return &fc.masters[i];
    return NULL;
}

/* An unused entry, else the one idle longest if idle MASTER_REUSE_NS (its
 * counters kept in the totals); NULL when every entry is in use. */
static master_breaker *free_master(uint64_t now)
{
    master_breaker *oldest = NULL;
    breaker_snapshot s;
    int i;

    for (i = 0; i < fc.nmasters; i++) {
        if (fc.masters[i].name[0] == '\0')
            return &fc.masters[i];
        if (oldest == NULL || fc.masters[i].last_ns < oldest->last_ns)
            oldest = &fc.masters[i];
    }
    if (oldest == NULL || now - oldest->last_ns < MASTER_REUSE_NS)
        return NULL;
    breaker_snapshot_get(oldest->b, now, &s);
    fc.retired_opens += s.opens;
    fc.retired_refused += s.refused;
    return oldest;
}

breaker *flowctl_master_breaker(const char *name)
{
    uint64_t now = uv_hrtime();
    master_breaker *m;

    pthread_mutex_lock(&fc.masters_mu);
    if ((m = find_master(name)) == NULL && (m = free_master(now)) != NULL) {
        char label[BREAKER_NAME_MAX];

        snprintf(m->name, sizeof(m->name), "%s", name);
        snprintf(label, sizeof(label), "redis %s", name);
        breaker_reset(m->b, label);
    }
    if (m != NULL)
        m->last_ns = now;
    pthread_mutex_unlock(&fc.masters_mu);
    return m ? m->b : fc.breakers[FLOWCTL_REDIS];
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

/* Folds a master's state into the "redis" summary: the worst state (open,
 * then half open), the longest run of failures and wait. */
static void merge_state(breaker_snapshot *into, const breaker_snapshot *s)
{
    static const int worse[] = {[BREAKER_CLOSED] = 0, [BREAKER_HALF_OPEN] = 1,
                                [BREAKER_OPEN] = 2};

    if (worse[s->state] > worse[into->state])
        into->state = s->state;
    if (s->consecutive_failures > into->consecutive_failures)
        into->consecutive_failures = s->consecutive_failures;
    if (s->retry_in_ms > into->retry_in_ms)
        into->retry_in_ms = s->retry_in_ms;
}

/* Snapshots of both breakers into 'deps' -- on a cluster "redis" summing
 * every master's breaker: states of those shown, counters of all -- and of
 * the masters shown into 'shown'; returns how many. */
static int snapshot_all(uint64_t now, breaker_snapshot deps[FLOWCTL_DEPS],
                        shown_master shown[MASTERS_MAX])
{
    breaker_snapshot *redis = &deps[FLOWCTL_REDIS];
    int dep;
    int n = 0;
    int i;

    for (dep = 0; dep < FLOWCTL_DEPS; dep++)
        breaker_snapshot_get(fc.breakers[dep], now, &deps[dep]);
    pthread_mutex_lock(&fc.masters_mu);
    redis->opens += fc.retired_opens;
    redis->refused += fc.retired_refused;
    for (i = 0; i < fc.nmasters; i++) {
        const master_breaker *m = &fc.masters[i];
        breaker_snapshot s;

        if (m->name[0] == '\0')
            continue;
        breaker_snapshot_get(m->b, now, &s);
        redis->opens += s.opens;
        redis->refused += s.refused;
        if (now - m->last_ns >= MASTER_SHOWN_NS)
            continue;
        merge_state(redis, &s);
        memcpy(shown[n].name, m->name, sizeof(shown[n].name));
        shown[n++].s = s;
    }
    pthread_mutex_unlock(&fc.masters_mu);
    return n;
}

/* {"state":..,...,"retry_in_ms":.. -- the caller closes it. */
static int breaker_fields(lj_buf *out, const breaker_snapshot *s)
{
    return lj_buf_printf(out, "{\"state\":\"%s\",\"consecutive_failures\":%u,\"opens\":%llu,"
                              "\"refused\":%llu,\"retry_in_ms\":%llu",
                         breaker_state_name(s->state), s->consecutive_failures,
                         (unsigned long long)s->opens, (unsigned long long)s->refused,
                         (unsigned long long)s->retry_in_ms);
}

static int render_masters_json(lj_buf *out, const shown_master *shown, int n)
{
    int i;

    if (lj_buf_puts(out, ",\"masters\":{"))
        return LJ_ENOMEM;
    for (i = 0; i < n; i++)
        if ((i && lj_buf_puts(out, ",")) ||
            lj_buf_json_str(out, shown[i].name, strlen(shown[i].name)) ||
            lj_buf_puts(out, ":") || breaker_fields(out, &shown[i].s) || lj_buf_puts(out, "}"))
            return LJ_ENOMEM;
    return lj_buf_puts(out, "}");
}

int flowctl_render_json(lj_buf *out)
{
    const lj_config *c = fc.cfg;
    uint64_t now = uv_hrtime();
    breaker_snapshot deps[FLOWCTL_DEPS];
    shown_master shown[MASTERS_MAX];
    int dep;
    int n;

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
    n = snapshot_all(now, deps, shown);
    for (dep = 0; dep < FLOWCTL_DEPS; dep++)
        if (lj_buf_printf(out, "%s\"%s\":", dep ? "," : "", dep_names[dep]) ||
            breaker_fields(out, &deps[dep]) ||
            (dep == FLOWCTL_REDIS && fc.nmasters && render_masters_json(out, shown, n)) ||
            lj_buf_puts(out, "}"))
            return LJ_ENOMEM;
    return lj_buf_puts(out, "}}");
}

/* The breakers' metric families, by field: 0 state, 1 opens, 2 refused. */
typedef struct family {
    const char *name;
    const char *type;
    const char *help;
} family;

static const family dep_families[] = {
    {"ljwx_breaker_state", "gauge", "Circuit breaker: 0 closed, 1 open, 2 half open."},
    {"ljwx_breaker_opens_total", "counter", "Times the circuit breaker opened."},
    {"ljwx_breaker_refused_total", "counter", "Calls refused by an open circuit breaker."},
};

static const family master_families[] = {
    {"ljwx_breaker_master_state", "gauge",
     "Circuit breaker of a Redis Cluster master: 0 closed, 1 open, 2 half open."},
    {"ljwx_breaker_master_opens_total", "counter",
     "Times the circuit breaker of a Redis Cluster master opened."},
    {"ljwx_breaker_master_refused_total", "counter",
     "Uploads refused by the open circuit breaker of a Redis Cluster master."},
};

static unsigned long long field_of(const breaker_snapshot *s, int field)
{
    return field == 0 ? (unsigned long long)s->state : field == 1 ? s->opens : s->refused;
}

/* Field 'field' of both breakers, then on a cluster of the masters shown. */
static int render_breaker_field(lj_buf *out, int field, const breaker_snapshot *deps,
                                const shown_master *shown, int n)
{
    const family *f = &dep_families[field];
    int i;

    if (lj_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name, f->type))
        return LJ_ENOMEM;
    for (i = 0; i < FLOWCTL_DEPS; i++)
        if (lj_buf_printf(out, "%s{dependency=\"%s\"} %llu\n", f->name, dep_names[i],
                          field_of(&deps[i], field)))
            return LJ_ENOMEM;
    if (fc.nmasters == 0)
        return 0;
    f = &master_families[field];
    if (lj_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name, f->type))
        return LJ_ENOMEM;
    for (i = 0; i < n; i++)
        if (lj_buf_printf(out, "%s{master=\"%s\"} %llu\n", f->name, shown[i].name,
                          field_of(&shown[i].s, field)))
            return LJ_ENOMEM;
    return 0;
}

int flowctl_render_prometheus(lj_buf *out)
{
    ratelimit_usage dev;
    ratelimit_usage addr;
    uint64_t now = uv_hrtime();
    breaker_snapshot deps[FLOWCTL_DEPS];
    shown_master shown[MASTERS_MAX];
    int field;
    int n;

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
    n = snapshot_all(now, deps, shown);
    for (field = 0; field < 3; field++)
        if (render_breaker_field(out, field, deps, shown, n))
            return LJ_ENOMEM;
    return 0;
}
