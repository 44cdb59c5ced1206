#include "ingest.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "cluster.h"
#include "err.h"
#include "flowctl.h"
#include "kinds.h"
#include "legacy.h"
#include "log.h"
#include "record.h"
#include "report.h"
#include "stats.h"
#include "streams.h"
#include "xwait.h"

#define MAX_ERROR_DETAILS 10

struct ingest {
    uv_loop_t *loop;
    const lj_config *cfg;
    rcluster *link;
    gray *gray;
    backlog *backlog;
    unsigned nshards;       /* --stream-shards */
    int tagged;             /* shard names carry the hash tag (stream_tagged) */
    char alert_stream[STREAM_NAME_MAX];
    uint64_t rng;           /* xorshift state for entry UUIDs */
    int closing;            /* ingest_close(): no new storage work */
};

enum shape { SHAPE_V2, SHAPE_ROUTED, SHAPE_BATCH };

/* One health upload in flight. Owns its records until answered. */
typedef struct upload {
    ingest *in;
    http_request *req;
    enum shape shape;
    int may_fall_back;      /* routed: the legacy path is the fallback */
    int in_flight;          /* counted by flowctl_enter() */
    breaker *redis;         /* the stream path's breaker (redis_breaker) */
    unsigned shard;         /* the stream path's shard */
    rec_batch b;
    char batch_id[REC_BATCH_ID_MAX + 1];
    uint64_t path_start_ns;
} upload;

/* ------------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------------ */

static int64_t now_ms(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* 'n' consecutive microseconds for records sent without a timestamp
 * (rec_batch_stamp): never earlier than the clock, never handed out twice
 * by this process, whichever loop thread asks. */
static int64_t reserve_instants(size_t n)
{
    static _Atomic int64_t next_us;
    struct timeval tv;
    int64_t now;
    int64_t cur;
    int64_t base;

    gettimeofday(&tv, NULL);
    now = (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
    cur = atomic_load(&next_us);
    do
        base = cur > now ? cur : now;
    while (!atomic_compare_exchange_weak(&next_us, &cur, base + (int64_t)n));
    return base;
}

static uint64_t next_random(ingest *in)
{
    uint64_t x = in->rng;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return in->rng = x;
}

/* A version 4 UUID; unique per upload, not a secret. */
static void make_uuid(ingest *in, char out[37])
{
    uint64_t hi = next_random(in);
    uint64_t lo = next_random(in);

    hi = (hi & ~0xF000ull) | 0x4000ull;
    lo = (lo & ~(3ull << 62)) | (2ull << 62);
    snprintf(out, 37, "%08x-%04x-%04x-%04x-%012llx", (unsigned)(hi >> 32),
             (unsigned)(hi >> 16) & 0xFFFF, (unsigned)hi & 0xFFFF, (unsigned)(lo >> 48),
             (unsigned long long)(lo & 0xFFFFFFFFFFFFull));
}

static double seconds_since(uint64_t start_ns)
{
    return (double)(uv_hrtime() - start_ns) / 1e9;
}

ingest *ingest_new(uv_loop_t *loop, const lj_config *cfg, rcluster *link, gray *g,
                   backlog *bl)
{
    ingest *in = calloc(1, sizeof(*in));

    if (in == NULL)
        return NULL;
    in->loop = loop;
    in->cfg = cfg;
    in->link = link;
    in->gray = g;
    in->backlog = bl;
    in->rng = ((uint64_t)now_ms() << 20) ^ (uint64_t)(uintptr_t)in ^ 0x9E3779B97F4A7C15ull;
    in->nshards = (unsigned)cfg->stream_shards;
    in->tagged = stream_tagged(in->nshards, rcluster_is_cluster(link));
    stream_alert_name(in->alert_stream, sizeof(in->alert_stream), cfg->stream_prefix);
    return in;
}

void ingest_close(ingest *in)
{
    in->closing = 1;
}

void ingest_free(ingest *in)
{
    free(in);
}

/* 503 with Retry-After for a wait of 'retry_ms'. */
static void unavailable_for(http_request *req, const char *msg, uint64_t retry_ms)
{
    char retry[48];
    char body[192];
    int n = snprintf(body, sizeof(body), "{\"status\":\"error\",\"message\":\"%s\"}", msg);

    flowctl_retry_after(retry_ms, retry, sizeof(retry));
    http_respond(req, 503, retry, body, (size_t)n);
}

void ingest_unavailable(http_request *req, const char *msg)
{
    unavailable_for(req, msg, 1000);
}

/* The address limit (off by default). 1 when 'req' may go on; else it is
 * answered 429. */
static int address_allowed(http_request *req)
{
    static const char body[] = "{\"status\":\"error\",\"message\":\"rate limit exceeded: "
                               "too many uploads from this address\",\"limit\":\"address\"}";
    char retry[48];
    uint64_t retry_ms;

    if (flowctl_addr_allow(req->remote_addr, &retry_ms))
        return 1;
    flowctl_retry_after(retry_ms, retry, sizeof(retry));
    http_respond(req, 429, retry, body, sizeof(body) - 1);
    return 0;
}

/* The in-flight cap. 1 when 'req' may wait on storage; else answered 503. */
static int enter_flight(http_request *req)
{
    if (flowctl_enter())
        return 1;
    ingest_unavailable(req, "too many uploads in flight, retry later");
    return 0;
}

/* Where an upload of device 'sn' goes: its shard of the stream of 'kind',
 * found once per upload. */
typedef struct xdest {
    stream_kind kind;
    unsigned shard;
    char stream[STREAM_NAME_MAX];
} xdest;

static void dest_of(const ingest *in, stream_kind kind, const char *sn, xdest *d)
{
    d->kind = kind;
    d->shard = stream_shard_of(sn, strlen(sn), in->nshards);
    stream_shard_name(d->stream, sizeof(d->stream), in->cfg->stream_prefix, kind, d->shard,
                      in->tagged);
}

/* The head of a stream path's answer: {"status":"accepted","stream_id":..,
 * and with more than one shard "shard" (an entry is a shard and an ID: two
 * shards may hand out one ID; /api/trace/<id>?shard=K names one). */
static int accepted_head(lj_buf *out, const ingest *in, unsigned shard, const char *id,
                         size_t id_len)
{
    if (lj_buf_puts(out, "{\"status\":\"accepted\",\"stream_id\":") ||
        lj_buf_json_str(out, id, id_len))
        return LJ_ENOMEM;
    return in->nshards > 1 ? lj_buf_printf(out, ",\"shard\":%u", shard) : 0;
}

/* Nonzero when the shard 'd' is over the high watermark. */
static int stream_full(const ingest *in, const xdest *d)
{
    return backlog_full(in->backlog, d->kind, d->shard);
}

/* The breaker in front of the XADD to 'd': on a cluster that of the master
 * its shard routes to, so a dead master refuses its own devices only; on
 * one Redis (or before the slot map is known) the one Redis breaker. */
static breaker *redis_breaker(const ingest *in, const xdest *d)
{
    char master[RCLUSTER_NAME_MAX];

    if (!rcluster_is_cluster(in->link) ||
        rcluster_master_name(in->link, d->stream, master, sizeof(master)) != 0)
        return flowctl_breaker(FLOWCTL_REDIS);
    return flowctl_master_breaker(master);
}

/* XADD <stream> * timestamp <ms> uuid <uuid> device_sn <sn> message_type <t>
 *      api_version v2 batch_id <id> payload <json>  ('cb' gets the reply) */
static int send_xadd(ingest *in, const xdest *d, const char *sn, const char *batch_id,
                     const lj_buf *payload, xwait_cb cb, void *arg)
{
    char ts[24];
    char uuid[37];
    const char *argv[] = {"XADD", d->stream, "*",
                          "timestamp", ts,
                          "uuid", uuid,
                          "device_sn", sn,
                          "message_type", stream_message_type(d->kind),
                          "api_version", "v2",
                          "batch_id", batch_id,
                          "payload", payload->data};
    size_t lens[sizeof(argv) / sizeof(argv[0])];
    size_t i;

    snprintf(ts, sizeof(ts), "%lld", (long long)now_ms());
    make_uuid(in, uuid);
    for (i = 0; i + 1 < sizeof(argv) / sizeof(argv[0]); i++)
        lens[i] = strlen(argv[i]);
    lens[i] = payload->len;
    return xwait_xadd(in->link, d->stream, (int)(i + 1), argv, lens,
                      (unsigned)in->cfg->redis_wait_replicas,
                      xverdict_wait_ms((unsigned)in->cfg->redis_timeout_ms), cb, arg);
}

static int errors_json(const rec_batch *b, lj_buf *out)
{
    size_t i;

    if (lj_buf_puts(out, "[") != 0)
        return LJ_ENOMEM;
    for (i = 0; i < b->nerr; i++)
        if (lj_buf_printf(out, "%s{\"index\":%d,\"reason\":", i ? "," : "", b->errs[i].index) ||
            lj_buf_json_str(out, b->errs[i].reason, strlen(b->errs[i].reason)) ||
            lj_buf_puts(out, "}"))
            return LJ_ENOMEM;
    return lj_buf_puts(out, "]");
}

/* The batch endpoint's keys (SPEC §2.1): "errors" is a count there, the
 * reasons go to "error_details" (at most 10 strings). */
static int batch_keys(const upload *u, lj_buf *out)
{
    size_t i;

    if (lj_buf_puts(out, ",\"batch_id\":") || lj_buf_json_str(out, u->batch_id, strlen(u->batch_id)) ||
        lj_buf_printf(out, ",\"total_records\":%zu,\"valid_records\":%zu,\"errors\":%zu,"
                           "\"error_details\":[",
                      u->b.total, u->b.n, u->b.nerr))
        return LJ_ENOMEM;
    for (i = 0; i < u->b.nerr && i < MAX_ERROR_DETAILS; i++) {
        char line[REC_REASON_MAX + 32];

        snprintf(line, sizeof(line), "record %d: %s", u->b.errs[i].index, u->b.errs[i].reason);
        if ((i && lj_buf_puts(out, ",")) || lj_buf_json_str(out, line, strlen(line)))
            return LJ_ENOMEM;
    }
    return lj_buf_printf(out, "],\"processing_time_ms\":%.3f",
                         seconds_since(u->req->start_ns) * 1000.0);
}

/* Everything after "status" and the path's own keys: counts and errors.
 * The batch endpoint, and any {"devices": [...]} body (the old service's
 * batch shape), also carry the old "processed": the records accepted. */
static int common_keys(const upload *u, lj_buf *out)
{
    if (lj_buf_printf(out, ",\"accepted\":%zu,\"rejected\":%zu", u->b.n, u->b.nerr))
        return LJ_ENOMEM;
    if ((u->shape == SHAPE_BATCH || u->b.devices) &&
        lj_buf_printf(out, ",\"processed\":%zu", u->b.n))
        return LJ_ENOMEM;
    if (u->shape == SHAPE_BATCH)
        return batch_keys(u, out);
    return lj_buf_puts(out, ",\"errors\":") || errors_json(&u->b, out) ? LJ_ENOMEM : 0;
}

static void upload_free(upload *u)
{
    if (u->in_flight)
        flowctl_leave();
    rec_batch_cleanup(&u->b);
    free(u);
}

static void respond_buf(http_request *req, int status, lj_buf *body, int rc)
{
    if (rc != 0)
        http_respond_error(req, 500, "out of memory");
    else
        http_respond(req, status, NULL, body->data, body->len);
    lj_buf_cleanup(body);
}

/* ------------------------------------------------------------------------
 * Legacy path
 * ------------------------------------------------------------------------ */

/* Fire and forget: the alerts are already in t_alert_info. */
static void publish_alerts(ingest *in, const store_stats *st)
{
    size_t i;
    size_t j;

    if (in->closing)
        return;     /* the link is going: t_alert_info has them all the same */
    for (i = 0; i < st->nalerts; i++) {
        const char *argv[STORE_ALERT_ARGC];
        size_t lens[STORE_ALERT_ARGC];
        store_alert_text t;

        store_alert_argv(in->alert_stream, in->cfg->alert_stream_maxlen, &st->alerts[i], &t,
                         argv);
        for (j = 0; j < STORE_ALERT_ARGC; j++)
            lens[j] = strlen(argv[j]);
        rcluster_command(in->link, in->alert_stream, STORE_ALERT_ARGC, argv, lens, NULL, NULL);
    }
}

/* Answers a legacy write that did not succeed, and returns 1; 0 when it
 * committed ('rc' 0: the caller answers). The PostgreSQL breaker hears of
 * it from legacy.c, once per group. 'what': "records", "report". */
static int legacy_failed(ingest *in, http_request *req, int rc, int late, uint64_t start_ns,
                         const char *what)
{
    stats_path(STATS_LEGACY, rc == 0, seconds_since(start_ns));
    if (late) {         /* still queued at its deadline: never written */
        log_warn("ingest", "legacy write still queued after %d ms: 503",
                 in->cfg->pool_request_timeout_ms);
        ingest_unavailable(req, "storage did not answer in time, retry later");
    } else if (rc == LJ_EPOISON) {
        char msg[64];

        snprintf(msg, sizeof(msg), "the database refused the %s", what);
        http_respond_error(req, 400, msg);
    } else if (rc != 0) {
        log_warn("ingest", "legacy write failed: %s", lj_strerror(rc));
        ingest_unavailable(req, "storage unavailable, retry later");
    } else {
        return 0;
    }
    return 1;
}

static void on_legacy_done(int rc, const store_stats *st, int late, void *arg)
{
    upload *u = arg;
    lj_buf body;
    int err;

    if (legacy_failed(u->in, u->req, rc, late, u->path_start_ns, "records"))
        goto out;
    publish_alerts(u->in, st);
    lj_buf_init(&body);
    err = lj_buf_printf(&body, "{\"status\":\"success\",\"message\":\"health data stored\","
                               "\"inserted\":%zu,\"duplicates\":%zu",
                        st->inserted, st->duplicates) ||
          common_keys(u, &body) || lj_buf_puts(&body, "}");
    respond_buf(u->req, 200, &body, err);
out:
    upload_free(u);
}

/* 1 when a legacy write may be queued now; else 'req' is answered 503 with
 * Retry-After (legacy path retired, shutting down, or the breaker open). */
static int legacy_open(ingest *in, http_request *req, uint64_t now_ns)
{
    uint64_t retry_ms;

    if (gray_legacy_retired(in->gray)) {
        ingest_unavailable(req, "stream unavailable and the legacy path is retired, retry later");
        return 0;
    }
    if (in->closing) {
        ingest_unavailable(req, "shutting down, retry later");
        return 0;
    }
    if (!breaker_allow(flowctl_breaker(FLOWCTL_PG), now_ns, &retry_ms)) {
        unavailable_for(req, "storage unavailable (circuit open), retry later", retry_ms);
        return 0;
    }
    return 1;
}

static void go_legacy(upload *u)
{
    u->path_start_ns = uv_hrtime();
    if (!legacy_open(u->in, u->req, u->path_start_ns)) {
        upload_free(u);
        return;
    }
    switch (legacy_store(u->in->loop, &u->b, (unsigned)u->in->cfg->pool_request_timeout_ms,
                         on_legacy_done, u)) {
    case 0:
        return;
    case LJ_EUNAVAIL:   /* the writers' queue is full: overload, not a PostgreSQL failure */
        ingest_unavailable(u->req, "storage busy, retry later");
        break;
    default:
        http_respond_error(u->req, 500, "out of memory");
        break;
    }
    stats_path(STATS_LEGACY, 0, seconds_since(u->path_start_ns));
    upload_free(u);
}

/* ------------------------------------------------------------------------
 * Stream path
 * ------------------------------------------------------------------------ */

/* The stream path cannot take 'u' now: a routed upload goes down the legacy
 * path, a v2 upload gets 503. */
static void stream_refused(upload *u, uint64_t retry_ms)
{
    if (u->may_fall_back) {
        atomic_fetch_add(&stats_fault.fallbacks, 1);
        go_legacy(u);
        return;
    }
    unavailable_for(u->req, "stream unavailable, retry later", retry_ms);
    upload_free(u);
}

static void stream_failed(upload *u, const char *why)
{
    stats_path(STATS_STREAM, 0, seconds_since(u->path_start_ns));
    log_warn("ingest", "XADD failed: %s", why);
    stream_refused(u, 1000);
}

/* A failure that opens no breaker: on a cluster, a refusal at once (the
 * shard's master is down or not known yet: 'sent' 0), CLUSTERDOWN /
 * TRYAGAIN, or a WAIT short of replicas is about one shard or a failover in
 * progress, and costs no wait; the master's breaker hears of lost replies
 * and of Redis's own errors (-OOM, ...) only. */
static int shard_failure(const ingest *in, xverdict v, const redisReply *err, int sent)
{
    cluster_redirect rd;

    if (!rcluster_is_cluster(in->link))
        return 0;
    if (!sent || v == XV_UNREPLICATED)
        return 1;
    return err != NULL && cluster_redirect_parse(err->str, err->len, &rd) == CLUSTER_RETRY;
}

/* An XADD's outcome for 'b', the breaker that let it through ('sent' 0: it
 * could not be sent); 1 when it succeeded. */
static int xadd_outcome(const ingest *in, breaker *b, xverdict v, const redisReply *err,
                        int sent)
{
    int ok = sent && v == XV_ADDED;

    if (ok || !shard_failure(in, v, err, sent))
        breaker_report(b, ok, uv_hrtime());
    else
        breaker_abstain(b, uv_hrtime());
    if (!ok)
        atomic_fetch_add(&stats_fault.xadd_errors, 1);
    return ok;
}

/* Why an XADD did not end in a 200, for the log. */
static const char *xadd_failure(xverdict v, const redisReply *err)
{
    if (v == XV_REFUSED)
        return err != NULL && err->type == REDIS_REPLY_ERROR ? err->str : "bad reply";
    return v == XV_UNREPLICATED ? "not confirmed on --redis-wait-replicas replicas"
                                : "link lost";
}

static void on_health_xadd(xverdict v, const char *id, size_t id_len, const redisReply *r,
                           void *arg)
{
    upload *u = arg;
    lj_buf body;
    int err;

    if (!xadd_outcome(u->in, u->redis, v, r, 1)) {
        stream_failed(u, xadd_failure(v, r));
        return;
    }
    stats_path(STATS_STREAM, 1, seconds_since(u->path_start_ns));
    lj_buf_init(&body);
    err = accepted_head(&body, u->in, u->shard, id, id_len) ||
          lj_buf_puts(&body, ",\"message\":\"health data accepted for processing\","
                             "\"processing\":\"async\"") ||
          common_keys(u, &body) || lj_buf_puts(&body, "}");
    respond_buf(u->req, 200, &body, err);
    upload_free(u);
}

static void go_stream(upload *u)
{
    uint64_t retry_ms;
    lj_buf payload;
    xdest d;
    int rc;

    u->path_start_ns = uv_hrtime();
    dest_of(u->in, STREAM_HEALTH, u->b.recs[0].device_sn, &d);
    u->shard = d.shard;
    if (stream_full(u->in, &d)) {
        atomic_fetch_add(&stats_fault.backpressure, 1);
        stream_failed(u, "stream over its high watermark");
        return;
    }
    u->redis = redis_breaker(u->in, &d);
    if (!breaker_allow(u->redis, u->path_start_ns, &retry_ms)) {
        stream_refused(u, retry_ms);
        return;
    }
    lj_buf_init(&payload);
    if (rec_batch_to_json(&u->b, &payload) != 0) {
        http_respond_error(u->req, 500, "out of memory");
        upload_free(u);
    } else if ((rc = send_xadd(u->in, &d, u->b.recs[0].device_sn, u->b.batch_id, &payload,
                               on_health_xadd, u)) != 0) {
        xadd_outcome(u->in, u->redis, XV_LOST, NULL, 0);
        stream_failed(u, "redis unavailable");
    }
    lj_buf_cleanup(&payload);
}

/* ------------------------------------------------------------------------
 * Health endpoints
 * ------------------------------------------------------------------------ */

static void respond_rejected(upload *u)
{
    lj_buf body;
    int err;

    lj_buf_init(&body);
    err = lj_buf_puts(&body, "{\"status\":\"error\",\"message\":\"no valid record\"") ||
          common_keys(u, &body) || lj_buf_puts(&body, "}");
    respond_buf(u->req, 400, &body, err);
}

/* Takes one token per distinct serial in 'b' and sets mark[i] for each
 * record whose device is over its limit. Returns how many were marked, with
 * '*retry_ms' the longest wait among them. */
static size_t mark_limited(const rec_batch *b, unsigned char *mark, uint32_t *seen,
                           size_t seen_mask, uint64_t *retry_ms)
{
    size_t nmarked = 0;
    size_t i;

    for (i = 0; i < b->n; i++) {
        const char *sn = b->recs[i].device_sn;
        size_t h = stream_hash(sn, strlen(sn)) & seen_mask;
        uint64_t wait = 0;

        /* 'seen' holds 1 + the first record of each serial met so far. */
        while (seen[h] && strcmp(b->recs[seen[h] - 1].device_sn, sn) != 0)
            h = (h + 1) & seen_mask;
        if (seen[h]) {
            mark[i] = mark[seen[h] - 1];
        } else {
            seen[h] = (uint32_t)i + 1;
            mark[i] = !flowctl_device_allow(sn, &wait);
            if (wait > *retry_ms)
                *retry_ms = wait;
        }
        nmarked += mark[i];
    }
    return nmarked;
}

/* The device limit over 'u': records of limited devices become errors with
 * reason rate_limited. 0 when records remain to store; LJ_ELIMIT when every
 * record was limited ('*retry_ms' set); LJ_ENOMEM. */
static int limit_devices(upload *u, uint64_t *retry_ms)
{
    /* Uploads of up to SMALL records (nearly all) need no allocation. */
    enum { SMALL = 32 };
    unsigned char small_mark[SMALL];
    uint32_t small_seen[2 * SMALL];
    size_t seen_len = 2 * SMALL;
    unsigned char *mark = small_mark;
    uint32_t *seen = small_seen;
    size_t nmarked;
    int rc = 0;

    if (u->in->cfg->device_rate == 0)
        return 0;
    if (u->b.n > SMALL) {
        while (seen_len < u->b.n * 2)
            seen_len <<= 1;
        mark = malloc(u->b.n);
        seen = malloc(seen_len * sizeof(*seen));
        if (mark == NULL || seen == NULL) {
            rc = LJ_ENOMEM;
            goto cleanup;
        }
    }
    memset(seen, 0, seen_len * sizeof(*seen));
    *retry_ms = 0;
    nmarked = mark_limited(&u->b, mark, seen, seen_len - 1, retry_ms);
    if (nmarked == 0)
        goto cleanup;
    flowctl_count_limited(nmarked, nmarked == u->b.n);
    if ((rc = rec_batch_reject(&u->b, mark, "rate_limited")) == 0 && u->b.n == 0)
        rc = LJ_ELIMIT;
cleanup:
    if (mark != small_mark)
        free(mark);
    if (seen != small_seen)
        free(seen);
    return rc;
}

/* 429: every record of 'u' was over its device's limit. */
static void respond_limited(upload *u, uint64_t retry_ms)
{
    const lj_config *c = u->in->cfg;
    char retry[48];
    lj_buf body;
    int err;

    flowctl_retry_after(retry_ms, retry, sizeof(retry));
    lj_buf_init(&body);
    err = lj_buf_printf(&body, "{\"status\":\"error\",\"message\":\"rate limit exceeded: "
                               "at most %d uploads/s per device (burst %d)\",\"limit\":\"device\","
                               "\"retry_after_ms\":%llu",
                        c->device_rate, c->device_burst, (unsigned long long)retry_ms) ||
          common_keys(u, &body) || lj_buf_puts(&body, "}");
    if (err)
        http_respond_error(u->req, 500, "out of memory");
    else
        http_respond(u->req, 429, retry, body.data, body.len);
    lj_buf_cleanup(&body);
}

/* Parses the body; answers and returns NULL when there is nothing to store. */
static upload *start_upload(ingest *in, http_request *req, enum shape shape)
{
    rec_opts opts = {(size_t)in->cfg->max_records, in->cfg->max_depth, in->cfg->tz_offset_min,
                     now_ms()};
    const char *msg = NULL;
    uint64_t retry_ms;
    size_t n_unstamped;
    upload *u;
    int rc;

    if (!address_allowed(req) || !enter_flight(req))
        return NULL;
    if ((u = calloc(1, sizeof(*u))) == NULL) {
        flowctl_leave();
        http_respond_error(req, 500, "out of memory");
        return NULL;
    }
    u->in = in;
    u->req = req;
    u->shape = shape;
    u->in_flight = 1;
    rec_batch_init(&u->b);
    if ((rc = rec_parse_body(req->body, req->body_len, &opts, &u->b, &msg)) != 0) {
        http_respond_error(req, rc == LJ_ETOOBIG ? 413 : rc == LJ_ENOMEM ? 500 : 400,
                           msg ? msg : lj_strerror(rc));
        upload_free(u);
        return NULL;
    }
    if ((n_unstamped = rec_batch_stamp(&u->b, 0)) > 0)
        rec_batch_stamp(&u->b, reserve_instants(n_unstamped));
    if (u->b.batch_id[0])
        memcpy(u->batch_id, u->b.batch_id, sizeof(u->batch_id));
    else
        make_uuid(in, u->batch_id);
    if (u->b.n == 0) {
        respond_rejected(u);
        upload_free(u);
        return NULL;
    }
    if ((rc = limit_devices(u, &retry_ms)) != 0) {
        if (rc == LJ_ELIMIT)
            respond_limited(u, retry_ms);
        else
            http_respond_error(req, 500, "out of memory");
        upload_free(u);
        return NULL;
    }
    return u;
}

void ingest_health_v2(ingest *in, http_request *req)
{
    upload *u = start_upload(in, req, SHAPE_V2);

    if (u == NULL)
        return;
    http_defer(req);
    go_stream(u);
}

/* Routed endpoints: the first record's device decides the path, so a
 * device's uploads always take the same one. */
static void route_health(ingest *in, http_request *req, enum shape shape)
{
    upload *u = start_upload(in, req, shape);

    if (u == NULL)
        return;
    http_defer(req);
    if (gray_takes_stream(in->gray, u->b.recs[0].device_sn)) {
        u->may_fall_back = 1;
        go_stream(u);
    } else {
        go_legacy(u);
    }
}

void ingest_health_routed(ingest *in, http_request *req)
{
    route_health(in, req, SHAPE_ROUTED);
}

void ingest_health_batch(ingest *in, http_request *req)
{
    route_health(in, req, SHAPE_BATCH);
}

/* ------------------------------------------------------------------------
 * Device info and events
 * ------------------------------------------------------------------------ */

typedef struct simple_upload {
    ingest *in;
    http_request *req;
    const char *what;
    unsigned shard;
    breaker *redis;
    uint64_t start_ns;
} simple_upload;

static void simple_free(simple_upload *su)
{
    flowctl_leave();
    free(su);
}

static void on_simple_xadd(xverdict v, const char *id, size_t id_len, const redisReply *r,
                           void *arg)
{
    simple_upload *su = arg;
    lj_buf body;
    int err;

    if (!xadd_outcome(su->in, su->redis, v, r, 1)) {
        stats_path(STATS_STREAM, 0, seconds_since(su->start_ns));
        ingest_unavailable(su->req, "stream unavailable, retry later");
        simple_free(su);
        return;
    }
    stats_path(STATS_STREAM, 1, seconds_since(su->start_ns));
    lj_buf_init(&body);
    err = accepted_head(&body, su->in, su->shard, id, id_len) ||
          lj_buf_printf(&body, ",\"message\":\"%s accepted for processing\"}", su->what);
    respond_buf(su->req, 200, &body, err);
    simple_free(su);
}

/* 1 when device 'sn' may send a report now; else 'req' is answered 429. */
static int device_allowed(ingest *in, http_request *req, const char *sn)
{
    char retry[48];
    char body[160];
    uint64_t retry_ms;
    int n;

    if (flowctl_device_allow(sn, &retry_ms))
        return 1;
    flowctl_count_limited(1, 1);
    flowctl_retry_after(retry_ms, retry, sizeof(retry));
    n = snprintf(body, sizeof(body),
                 "{\"status\":\"error\",\"message\":\"rate limit exceeded: at most %d "
                 "uploads/s per device (burst %d)\",\"limit\":\"device\",\"retry_after_ms\":%llu}",
                 in->cfg->device_rate, in->cfg->device_burst, (unsigned long long)retry_ms);
    http_respond(req, 429, retry, body, (size_t)n);
    return 0;
}

/* Sends a validated device report or event; answers on failure. */
static void send_simple(ingest *in, http_request *req, stream_kind kind, const char *sn,
                        const lj_buf *payload, const char *what)
{
    simple_upload *su;
    uint64_t retry_ms;
    xdest d;

    if (!device_allowed(in, req, sn) || !enter_flight(req))
        return;
    if ((su = malloc(sizeof(*su))) == NULL) {
        flowctl_leave();
        http_respond_error(req, 500, "out of memory");
        return;
    }
    su->in = in;
    su->req = req;
    su->what = what;
    dest_of(in, kind, sn, &d);
    su->shard = d.shard;
    su->start_ns = uv_hrtime();
    if (stream_full(in, &d)) {
        atomic_fetch_add(&stats_fault.backpressure, 1);
        ingest_unavailable(req, "stream backlog full, retry later");
        simple_free(su);
        return;
    }
    su->redis = redis_breaker(in, &d);
    if (!breaker_allow(su->redis, su->start_ns, &retry_ms)) {
        unavailable_for(req, "stream unavailable, retry later", retry_ms);
        simple_free(su);
        return;
    }
    if (send_xadd(in, &d, sn, "", payload, on_simple_xadd, su) != 0) {
        xadd_outcome(in, su->redis, XV_LOST, NULL, 0);
        ingest_unavailable(req, "stream unavailable, retry later");
        simple_free(su);
        return;
    }
    http_defer(req);
}

/* The new device info and event paths: parse, encode, XADD (kinds.h). */
static void simple_v2(ingest *in, http_request *req, stream_kind kind)
{
    rec_opts opts = {1, in->cfg->max_depth, in->cfg->tz_offset_min, now_ms()};
    const kind_ops *k = kind_get(kind);
    const char *msg = NULL;
    lj_buf payload;
    kind_value v;
    int rc;

    if (!address_allowed(req))
        return;
    lj_buf_init(&payload);
    memset(&v, 0, sizeof(v));
    if ((rc = k->parse(req->body, req->body_len, &opts, &v, &msg)) != 0)
        http_respond_error(req, rc == LJ_ENOMEM ? 500 : 400, msg);
    else if (k->encode(&v, &payload) != 0)
        http_respond_error(req, 500, "out of memory");
    else
        send_simple(in, req, kind, k->device_sn(&v), &payload, k->what);
    k->cleanup(&v);
    lj_buf_cleanup(&payload);
}

void ingest_device_v2(ingest *in, http_request *req)
{
    simple_v2(in, req, STREAM_DEVICE);
}

void ingest_event_v2(ingest *in, http_request *req)
{
    simple_v2(in, req, STREAM_EVENT);
}

/* ------------------------------------------------------------------------
 * Old device info and event paths, routed by the gray ratio (SPEC §7)
 * ------------------------------------------------------------------------ */

/* One routed report in flight. Owns the parsed report until answered. */
typedef struct report_upload {
    ingest *in;
    http_request *req;
    stream_kind kind;       /* STREAM_DEVICE or STREAM_EVENT */
    const char *what;       /* "device info", "event" (kinds.h) */
    char id[37];            /* device reports: the history's stream_id */
    breaker *redis;         /* the stream path's breaker (redis_breaker) */
    unsigned shard;         /* the stream path's shard */
    uint64_t start_ns;
    kind_value u;
} report_upload;

static void report_free(report_upload *ru)
{
    flowctl_leave();
    kind_get(ru->kind)->cleanup(&ru->u);
    free(ru);
}

static const char *report_sn(const report_upload *ru)
{
    return kind_get(ru->kind)->device_sn(&ru->u);
}

static void on_report_done(int rc, const store_stats *st, int late, void *arg)
{
    report_upload *ru = arg;
    lj_buf body;
    int err;

    if (legacy_failed(ru->in, ru->req, rc, late, ru->start_ns, "report"))
        goto out;
    publish_alerts(ru->in, st);
    lj_buf_init(&body);
    err = lj_buf_printf(&body, "{\"status\":\"success\",\"message\":\"%s stored\","
                               "\"inserted\":%zu,\"duplicates\":%zu,\"alerts\":%zu}",
                        ru->what, st->inserted, st->duplicates, st->nalerts);
    respond_buf(ru->req, 200, &body, err);
out:
    report_free(ru);
}

static void report_legacy(report_upload *ru)
{
    unsigned timeout = (unsigned)ru->in->cfg->pool_request_timeout_ms;
    int rc;

    ru->start_ns = uv_hrtime();
    if (!legacy_open(ru->in, ru->req, ru->start_ns)) {
        report_free(ru);
        return;
    }
    if (ru->kind == STREAM_DEVICE) {
        make_uuid(ru->in, ru->id);
        rc = legacy_store_device(ru->in->loop, &ru->u.device, ru->id, timeout, on_report_done,
                                 ru);
    } else {
        rc = legacy_store_event(ru->in->loop, &ru->u.event, timeout, on_report_done, ru);
    }
    if (rc == 0)
        return;
    if (rc == LJ_EUNAVAIL)
        ingest_unavailable(ru->req, "storage busy, retry later");
    else
        http_respond_error(ru->req, 500, "out of memory");
    stats_path(STATS_LEGACY, 0, seconds_since(ru->start_ns));
    report_free(ru);
}

/* The stream path could not take 'ru': the legacy path instead (SPEC §4). */
static void report_fall_back(report_upload *ru, const char *why)
{
    log_warn("ingest", "%s: %s, legacy path instead device=%s", ru->what, why, report_sn(ru));
    atomic_fetch_add(&stats_fault.fallbacks, 1);
    report_legacy(ru);
}

static void on_report_xadd(xverdict v, const char *id, size_t id_len, const redisReply *r,
                           void *arg)
{
    report_upload *ru = arg;
    lj_buf body;
    int err;

    if (!xadd_outcome(ru->in, ru->redis, v, r, 1)) {
        stats_path(STATS_STREAM, 0, seconds_since(ru->start_ns));
        if (v == XV_REFUSED) {  /* an error reply: definitely not added */
            report_fall_back(ru, "XADD refused");
            return;
        }
        /* Link lost, timed out, or not confirmed on the replicas: the entry
         * may exist, and the legacy path would store the report again
         * (another history ID). */
        log_warn("ingest", "%s: XADD outcome unknown (%s): 503 device=%s", ru->what,
                 xadd_failure(v, r), report_sn(ru));
        ingest_unavailable(ru->req, "stream outcome unknown, retry later");
        report_free(ru);
        return;
    }
    stats_path(STATS_STREAM, 1, seconds_since(ru->start_ns));
    lj_buf_init(&body);
    err = accepted_head(&body, ru->in, ru->shard, id, id_len) ||
          lj_buf_printf(&body, ",\"message\":\"%s accepted for processing\"}", ru->what);
    respond_buf(ru->req, 200, &body, err);
    report_free(ru);
}

static void report_stream(report_upload *ru)
{
    uint64_t retry_ms;
    lj_buf payload;
    xdest d;
    int rc;

    ru->start_ns = uv_hrtime();
    dest_of(ru->in, ru->kind, report_sn(ru), &d);
    ru->shard = d.shard;
    if (stream_full(ru->in, &d)) {
        atomic_fetch_add(&stats_fault.backpressure, 1);
        report_fall_back(ru, "stream over its high watermark");
        return;
    }
    ru->redis = redis_breaker(ru->in, &d);
    if (!breaker_allow(ru->redis, ru->start_ns, &retry_ms)) {
        report_fall_back(ru, "redis circuit open");
        return;
    }
    lj_buf_init(&payload);
    if ((rc = kind_get(ru->kind)->encode(&ru->u, &payload)) != 0) {
        http_respond_error(ru->req, 500, "out of memory");
        report_free(ru);
    } else if (send_xadd(ru->in, &d, report_sn(ru), "", &payload, on_report_xadd, ru) != 0) {
        xadd_outcome(ru->in, ru->redis, XV_LOST, NULL, 0);
        stats_path(STATS_STREAM, 0, seconds_since(ru->start_ns));
        report_fall_back(ru, "redis unavailable");
    }
    lj_buf_cleanup(&payload);
}

/* Parses, checks the limits and routes one report; answers every failure. */
static void route_report(ingest *in, http_request *req, stream_kind kind)
{
    rec_opts opts = {1, in->cfg->max_depth, in->cfg->tz_offset_min, now_ms()};
    const char *msg = NULL;
    report_upload *ru;
    int rc;

    if (!address_allowed(req))
        return;
    if ((ru = calloc(1, sizeof(*ru))) == NULL) {
        http_respond_error(req, 500, "out of memory");
        return;
    }
    ru->in = in;
    ru->req = req;
    ru->kind = kind;
    ru->what = kind_get(kind)->what;
    rc = kind_get(kind)->parse(req->body, req->body_len, &opts, &ru->u, &msg);
    if (rc != 0 || !device_allowed(in, req, report_sn(ru)) || !enter_flight(req)) {
        if (rc != 0)
            http_respond_error(req, rc == LJ_ENOMEM ? 500 : 400, msg ? msg : lj_strerror(rc));
        kind_get(kind)->cleanup(&ru->u);
        free(ru);
        return;
    }
    http_defer(req);
    if (gray_takes_stream(in->gray, report_sn(ru)))
        report_stream(ru);
    else
        report_legacy(ru);
}

void ingest_device_routed(ingest *in, http_request *req)
{
    route_report(in, req, STREAM_DEVICE);
}

void ingest_event_routed(ingest *in, http_request *req)
{
    route_report(in, req, STREAM_EVENT);
}
