#include "ops.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "err.h"
#include "flowctl.h"
#include "ingest.h"
#include "legacy.h"
#include "log.h"
#include "pg.h"
#include "pool.h"
#include "record.h"
#include "rconn.h"
#include "rds.h"
#include "stats.h"
#include "streams.h"

/* A query answered from a pool thread, or at its deadline from the loop. */
typedef struct query {
    http_request *req;              /* NULL once answered at the deadline */
    const lj_config *cfg;
    void (*fill)(struct query *q);  /* pool thread: writes 'out' and 'status' */
    /* Loop, at the deadline: writes the answer into 'body' (not 'out', which
     * the pool thread may be writing) and returns its status. NULL: 503. */
    int (*expired)(const struct query *q, lj_buf *body);
    /* Loop, after the work (late or not), before any answer. May be NULL. */
    void (*after)(struct query *q);
    lj_buf out;
    int status;
    int redis_up;                   /* the loop's view, taken before submitting */
    int ratio;
} query;

static void run_fill(void *arg)
{
    query *q = arg;

    q->fill(q);
}

static void on_expired(void *arg)
{
    query *q = arg;
    lj_buf body;
    int status;

    lj_buf_init(&body);
    if (q->expired == NULL) {
        ingest_unavailable(q->req, "postgresql did not answer in time, retry later");
    } else if ((status = q->expired(q, &body)) == 500 || body.len == 0) {
        http_respond_error(q->req, 500, "out of memory");
    } else {
        http_respond(q->req, status, status == 503 ? "Retry-After: 1\r\n" : NULL, body.data,
                     body.len);
    }
    lj_buf_cleanup(&body);
    q->req = NULL;
}

static void answer(void *arg, int late)
{
    query *q = arg;

    if (q->after)
        q->after(q);
    if (late) {
        /* answered at the deadline already */
    } else if (q->status == 500 && q->out.len == 0) {
        http_respond_error(q->req, 500, "out of memory");
    } else {
        http_respond(q->req, q->status, NULL, q->out.data, q->out.len);
    }
    lj_buf_cleanup(&q->out);
    free(q);
}

/* Queues 'q' (filled in, owned from now on) with a deadline of 'timeout_ms'. */
static void start(uv_loop_t *loop, query *q, int timeout_ms)
{
    http_request *req = q->req;

    q->status = 500;
    lj_buf_init(&q->out);
    if (pool_submit_within(loop, (unsigned)timeout_ms, run_fill, on_expired, answer, q) != 0) {
        if (q->after)
            q->after(q);
        free(q);
        http_respond_error(req, 503, "busy, retry later");
        return;
    }
    http_defer(req);
}

/* A query for 'req', or NULL (then 'req' is answered 500). */
static query *new_query(http_request *req, const lj_config *cfg, void (*fill)(query *),
                        int redis_up, int ratio)
{
    query *q = calloc(1, sizeof(*q));

    if (q == NULL) {
        http_respond_error(req, 500, "out of memory");
        return NULL;
    }
    q->req = req;
    q->cfg = cfg;
    q->fill = fill;
    q->redis_up = redis_up;
    q->ratio = ratio;
    return q;
}

static void submit(uv_loop_t *loop, http_request *req, const lj_config *cfg,
                   void (*fill)(query *), int redis_up, int ratio)
{
    query *q = new_query(req, cfg, fill, redis_up, ratio);

    if (q != NULL)
        start(loop, q, cfg->pool_request_timeout_ms);
}

/* ------------------------------------------------------------------------
 * /api/health: answers within --health-timeout-ms, whatever PostgreSQL does
 * ------------------------------------------------------------------------ */

/* 1 when this thread's connection answers and can write. A read-only one
 * (a standby, or a demoted primary after a failover) is down for us and
 * dropped, so the next call reconnects to the read-write host. */
static int pg_ping(int timeout_ms)
{
    PGconn *pg = pool_pg();
    PGresult *r;
    int ok;

    if (pg == NULL)
        return 0;
    r = pg_query_within(pg, "SELECT pg_is_in_recovery()"
                            " OR current_setting('transaction_read_only')::bool", timeout_ms);
    ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
         strcmp(PQgetvalue(r, 0, 0), "f") == 0;
    PQclear(r);
    if (!ok)
        pool_pg_failed();
    return ok;
}

/* Now as ISO 8601 UTC with milliseconds ("2026-12-02T14:20:00.123Z"). */

/* The answer for PostgreSQL up or not ('pg'); returns its status (500: out
 * of memory). "status" is the old service's two values (healthy: both up),
 * with "error" when unhealthy; "state" ours: degraded while one path can
 * store, which keeps the answer 200. */
static int health_body(const query *q, int pg, lj_buf *out)
{
    const char *error = pg ? "redis unreachable"
                           : q->redis_up ? "postgresql unreachable"
                                         : "redis and postgresql unreachable";
    char ratio[16];
    char when[CLOCK_ISO_MAX];

    gray_format(q->ratio, ratio, sizeof(ratio));
    clock_iso_now(when, sizeof(when));
    if (lj_buf_printf(out, "{\"status\":\"%s\",\"timestamp\":\"%s\",\"state\":\"%s\","
                           "\"redis\":%s,\"postgres\":%s,\"traffic_ratio\":%s",
                      pg && q->redis_up ? "healthy" : "unhealthy", when,
                      pg && q->redis_up ? "healthy" : (pg || q->redis_up ? "degraded" : "down"),
                      q->redis_up ? "true" : "false", pg ? "true" : "false", ratio) != 0 ||
        (!(pg && q->redis_up) && lj_buf_printf(out, ",\"error\":\"%s\"", error) != 0) ||
        lj_buf_puts(out, "}") != 0) {
        lj_buf_cleanup(out);
        return 500;
    }
    return pg || q->redis_up ? 200 : 503;
}

static void fill_health(query *q)
{
    q->status = health_body(q, pg_ping(q->cfg->health_timeout_ms), &q->out);
}

/* No answer from PostgreSQL (or no free pool thread) in time: it is down. */
static int health_expired(const query *q, lj_buf *body)
{
    return health_body(q, 0, body);
}

void ops_health(uv_loop_t *loop, const lj_config *cfg, rcluster *link, gray *g, http_request *req)
{
    query *q = new_query(req, cfg, fill_health, rcluster_ready(link), gray_ratio(g));

    if (q == NULL)
        return;
    q->expired = health_expired;
    start(loop, q, cfg->health_timeout_ms);
}

/* ------------------------------------------------------------------------
 * Streams
 * ------------------------------------------------------------------------ */

/* The shards of every stream (SPEC §3): with one untagged shard, the plain
 * name is the stream, and every answer has its old shape; else each figure
 * is read from every shard (each on its master) and summed under the plain
 * name, with the detail per shard under "shards". */
typedef struct shards {
    const char *prefix;
    unsigned n;
    int tagged;
} shards;

static shards shards_of(const lj_config *cfg)
{
    shards s = {cfg->stream_prefix, (unsigned)cfg->stream_shards, 0};

    s.tagged = stream_tagged(s.n, cfg->redis_cluster[0] != '\0');
    return s;
}

static void shard_name(const shards *s, stream_kind kind, unsigned i, char *out, size_t len)
{
    stream_shard_name(out, len, s->prefix, kind, i, s->tagged);
}

/* '*sum' += 'v'; -1 (not known) once either is. */
static void add(long long *sum, long long v)
{
    *sum = *sum < 0 || v < 0 ? -1 : *sum + v;
}

static long long xlen(rconn *c, const char *key)
{
    const char *argv[] = {"XLEN", key};
    redisReply *r = rconn_command(c, key, 2, argv);
    long long n = -1;

    if (r && r->type == REDIS_REPLY_INTEGER)
        n = r->integer;
    if (r)
        freeReplyObject(r);
    return n;
}

static int consumers_json(rconn *c, const char *stream, const char *group, lj_buf *out)
{
    const char *argv[] = {"XINFO", "CONSUMERS", stream, group};
    redisReply *r = rconn_command(c, stream, 4, argv);
    size_t i;
    int rc = lj_buf_puts(out, "[");

    for (i = 0; rc == 0 && r && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        const redisReply *name = rds_map_get(r->element[i], "name");

        if (name == NULL || name->type != REDIS_REPLY_STRING)
            continue;
        rc = lj_buf_puts(out, i ? ",{\"name\":" : "{\"name\":") ||
             lj_buf_json_str(out, name->str, name->len) ||
             lj_buf_printf(out, ",\"pending\":%lld,\"idle_ms\":%lld}",
                           rds_map_int(r->element[i], "pending"), rds_map_int(r->element[i], "idle"));
    }
    if (r)
        freeReplyObject(r);
    return rc || lj_buf_puts(out, "]");
}

/* One shard's figures, summed over the shards of a stream. */
typedef struct figures {
    long long length;
    long long dead;
    long long pending;      /* of the kind's group */
    long long lag;
} figures;

/* Appends the groups of 'stream' and adds the pending and lag of 'group'
 * to 'f'. */
static int groups_json(rconn *c, const char *stream, const char *group, figures *f,
                       lj_buf *out)
{
    const char *argv[] = {"XINFO", "GROUPS", stream};
    redisReply *r = rconn_command(c, stream, 3, argv);
    size_t i;
    int rc = lj_buf_puts(out, "[");

    for (i = 0; rc == 0 && r && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        const redisReply *g = r->element[i];
        const redisReply *name = rds_map_get(g, "name");
        const redisReply *last = rds_map_get(g, "last-delivered-id");

        if (name == NULL || name->type != REDIS_REPLY_STRING || last == NULL ||
            last->type != REDIS_REPLY_STRING)
            continue;
        if (strcmp(name->str, group) == 0) {
            add(&f->pending, rds_map_int(g, "pending"));
            add(&f->lag, rds_map_int(g, "lag"));
        }
        rc = lj_buf_puts(out, i ? ",{\"name\":" : "{\"name\":") ||
             lj_buf_json_str(out, name->str, name->len) ||
             lj_buf_printf(out, ",\"pending\":%lld,\"lag\":%lld,\"last_delivered_id\":\"%s\","
                                "\"consumers\":",
                           rds_map_int(g, "pending"), rds_map_int(g, "lag"), last->str) ||
             consumers_json(c, stream, name->str, out) || lj_buf_puts(out, "}");
    }
    if (r == NULL)
        f->pending = f->lag = -1;
    if (r)
        freeReplyObject(r);
    return rc || lj_buf_puts(out, "]");
}

/* "<stream>":{"length":..,"dead_letters":..,"groups":[..]} of one shard. */
static int shard_json(rconn *c, const char *stream, const char *group, figures *f,
                      lj_buf *out)
{
    char dead[STREAM_KEY_MAX];
    long long n = xlen(c, stream);
    long long d;

    stream_side_key(dead, sizeof(dead), stream, STREAM_SIDE_DEAD);
    d = xlen(c, dead);
    add(&f->length, n);
    add(&f->dead, d);
    return lj_buf_printf(out, "\"%s\":{\"length\":%lld,\"dead_letters\":%lld,\"groups\":",
                         stream, n, d) ||
           groups_json(c, stream, group, f, out) || lj_buf_puts(out, "}");
}

/* One stream of our "streams": one shard as before; else the sums under
 * the plain name (the kind's group with pending and lag) and the shards'
 * own entries under "shards". */
static int stream_json(rconn *c, const shards *s, stream_kind kind, lj_buf *out)
{
    char name[STREAM_NAME_MAX];
    char group[STREAM_NAME_MAX];
    figures f = {0, 0, 0, 0};
    lj_buf detail;
    unsigned i;
    int rc = 0;

    stream_group(group, sizeof(group), s->prefix, kind);
    if (!s->tagged) {
        shard_name(s, kind, 0, name, sizeof(name));
        return shard_json(c, name, group, &f, out);
    }
    lj_buf_init(&detail);
    for (i = 0; rc == 0 && i < s->n; i++) {
        shard_name(s, kind, i, name, sizeof(name));
        rc = (i && lj_buf_puts(&detail, ",")) || shard_json(c, name, group, &f, &detail);
    }
    stream_name(name, sizeof(name), s->prefix, kind);
    rc = rc || lj_buf_printf(out, "\"%s\":{\"length\":%lld,\"dead_letters\":%lld,\"groups\":"
                                  "[{\"name\":\"%s\",\"pending\":%lld,\"lag\":%lld}],"
                                  "\"shards\":{",
                             name, f.length, f.dead, group, f.pending, f.lag) ||
         lj_buf_append(out, detail.data, detail.len) || lj_buf_puts(out, "}}");
    lj_buf_cleanup(&detail);
    return rc;
}

/* The old "stream_info" of a stream, over its shards: lengths summed,
 * groups the most any shard has, the first entry the oldest, the last the
 * newest. -1 lengths when a shard did not answer. */
typedef struct old_info {
    long long length;
    long long groups;
    char first[48];
    char last[48];
} old_info;

static void keep_id(const redisReply *e, char *id, size_t len, int newest)
{
    const redisReply *v;

    if (e == NULL || e->type != REDIS_REPLY_ARRAY || e->elements < 1)
        return;
    v = e->element[0];
    if (v->type != REDIS_REPLY_STRING || v->len >= len)
        return;
    if (!*id || (stream_id_cmp(v->str, id) > 0) == newest)
        memcpy(id, v->str, v->len + 1);
}

static void read_old_info(rconn *c, const char *stream, old_info *o)
{
    const char *argv[] = {"XINFO", "STREAM", stream};
    redisReply *r = rconn_command(c, stream, 3, argv);
    const redisReply *info = r && r->type == REDIS_REPLY_ARRAY ? r : NULL;

    if (r == NULL) {
        o->length = o->groups = -1;
        return;
    }
    if (info) {
        add(&o->length, rds_map_int(info, "length"));
        if (o->groups >= 0 && rds_map_int(info, "groups") > o->groups)
            o->groups = rds_map_int(info, "groups");
        keep_id(rds_map_get(info, "first-entry"), o->first, sizeof(o->first), 0);
        keep_id(rds_map_get(info, "last-entry"), o->last, sizeof(o->last), 1);
    }
    freeReplyObject(r);
}

static int id_json(const char *id, lj_buf *out)
{
    return *id ? lj_buf_json_str(out, id, strlen(id)) : lj_buf_puts(out, "null");
}

/* Appends the old "stream_info" and "config" of the stream of 'kind' (XINFO
 * STREAM of every shard; a stream not yet created is empty, without
 * groups). */
static int old_stream_json(rconn *c, const shards *s, stream_kind kind, lj_buf *out)
{
    char name[STREAM_NAME_MAX];
    char group[STREAM_NAME_MAX];
    old_info o = {0, 0, "", ""};
    unsigned i;

    for (i = 0; i < s->n; i++) {
        shard_name(s, kind, i, name, sizeof(name));
        read_old_info(c, name, &o);
    }
    stream_name(name, sizeof(name), s->prefix, kind);
    stream_group(group, sizeof(group), s->prefix, kind);
    return lj_buf_printf(out, "\"%s\":{\"stream_info\":{\"length\":%lld,\"groups\":%lld,"
                              "\"first_entry\":",
                         name, o.length, o.groups) ||
           id_json(o.first, out) || lj_buf_puts(out, ",\"last_entry\":") ||
           id_json(o.last, out) ||
           lj_buf_printf(out, "},\"config\":{\"consumer_group\":\"%s\",\"max_length\":null}}",
                         group);
}

/* What the consumers counted in <stream>:counts (STREAM_COUNT_* fields of
 * streams.h, in this order), added to 'n'. Missing fields are 0; -1 when
 * Redis did not answer. */
enum { C_STORED, C_DUPLICATE, C_DEAD, C_GONE, C_BATCHES, C_ERRORS, C_FIELDS };

static void read_counts(rconn *c, const char *stream, long long n[C_FIELDS])
{
    char key[STREAM_KEY_MAX];
    const char *argv[] = {"HMGET", key, STREAM_COUNT_STORED, STREAM_COUNT_DUPLICATE,
                          STREAM_COUNT_DEAD, STREAM_COUNT_GONE, STREAM_COUNT_BATCHES,
                          STREAM_COUNT_ERRORS};
    redisReply *r;
    int i;

    stream_side_key(key, sizeof(key), stream, STREAM_SIDE_COUNTS);
    r = rconn_command(c, key, 2 + C_FIELDS, argv);
    for (i = 0; i < C_FIELDS; i++) {
        const redisReply *v = r && r->type == REDIS_REPLY_ARRAY && r->elements == C_FIELDS
                                  ? r->element[i] : NULL;

        add(&n[i], v && v->type == REDIS_REPLY_STRING ? atoll(v->str) : r ? 0 : -1);
    }
    if (r)
        freeReplyObject(r);
}

/* Every shard's counts of the stream of 'kind', summed. */
static void read_all_counts(rconn *c, const shards *s, stream_kind kind, long long n[C_FIELDS])
{
    char name[STREAM_NAME_MAX];
    unsigned i;

    memset(n, 0, sizeof(long long) * C_FIELDS);
    for (i = 0; i < s->n; i++) {
        shard_name(s, kind, i, name, sizeof(name));
        read_counts(c, name, n);
    }
}

/* ,"stream_stats":{"manager_stats":{..},"streams":{..}},"consumer_stats":{..},
 * "timestamp":<epoch s>: the old service's keys, from XINFO STREAM, the
 * stream path's counters (stats.h) and the consumers' counts, each summed
 * over the shards under the plain names. */
static int old_stream_stats(rconn *c, const shards *s, lj_buf *out)
{
    long long counts[STREAM_KINDS][C_FIELDS];
    unsigned long long added;
    unsigned long long failed;
    long long last_failure;
    long long consumed = 0;
    char name[STREAM_NAME_MAX];
    int rc;
    int k;

    for (k = 0; k < STREAM_KINDS; k++) {
        read_all_counts(c, s, (stream_kind)k, counts[k]);
        consumed += counts[k][C_STORED] + counts[k][C_DUPLICATE] + counts[k][C_DEAD] +
                    counts[k][C_GONE];
    }
    stats_stream_counts(&added, &failed, &last_failure);
    rc = lj_buf_printf(out, ",\"stream_stats\":{\"manager_stats\":{\"messages_produced\":%llu,"
                            "\"messages_consumed\":%lld,\"errors\":%llu,\"last_error_time\":",
                       added, consumed, failed) ||
         (last_failure ? lj_buf_printf(out, "%lld", last_failure) : lj_buf_puts(out, "null")) ||
         lj_buf_puts(out, "},\"streams\":{");
    for (k = 0; rc == 0 && k < STREAM_KINDS; k++)
        rc = (k && lj_buf_puts(out, ",")) || old_stream_json(c, s, (stream_kind)k, out);
    rc = rc || lj_buf_puts(out, "}},\"consumer_stats\":{");
    for (k = 0; rc == 0 && k < STREAM_KINDS; k++) {
        stream_name(name, sizeof(name), s->prefix, (stream_kind)k);
        rc = lj_buf_printf(out, "%s\"%s\":{\"processed_messages\":%lld,\"processed_batches\":%lld,"
                                "\"errors\":%lld}",
                           k ? "," : "", name, counts[k][C_STORED] + counts[k][C_DUPLICATE],
                           counts[k][C_BATCHES], counts[k][C_ERRORS] + counts[k][C_DEAD]);
    }
    return rc || lj_buf_printf(out, "},\"timestamp\":%lld", (long long)time(NULL));
}

static void fill_stream_stats(query *q)
{
    rconn *c = pool_redis();
    shards s = shards_of(q->cfg);
    int k;
    int rc;

    if (c == NULL) {
        q->status = 503;
        lj_buf_puts(&q->out, "{\"status\":\"error\",\"message\":\"redis unavailable\"}");
        return;
    }
    rc = lj_buf_puts(&q->out, "{\"streams\":{");
    for (k = 0; rc == 0 && k < STREAM_KINDS; k++)
        rc = (k && lj_buf_puts(&q->out, ",")) || stream_json(c, &s, (stream_kind)k, &q->out);
    rc = rc || lj_buf_puts(&q->out, "}") || old_stream_stats(c, &s, &q->out) ||
         lj_buf_puts(&q->out, "}");
    if (rconn_broken(c))
        pool_redis_failed();
    q->status = rc ? 500 : 200;
}

void ops_stream_stats(uv_loop_t *loop, const lj_config *cfg, http_request *req)
{
    submit(loop, req, cfg, fill_stream_stats, 1, 0);
}

/* 1 when 'group' exists on 'stream', 0 when not (or no such stream), -1
 * when Redis did not answer. */
static int group_exists(rconn *c, const char *stream, const char *group)
{
    const char *argv[] = {"XINFO", "GROUPS", stream};
    redisReply *r = rconn_command(c, stream, 3, argv);
    size_t i;
    int found = 0;

    if (r == NULL)
        return -1;
    for (i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        const redisReply *name = rds_map_get(r->element[i], "name");

        if (name && name->type == REDIS_REPLY_STRING && strcmp(name->str, group) == 0)
            found = 1;
    }
    freeReplyObject(r);
    return found;
}

/* Why the stream system is not healthy, into 'why' ("" when it is): Redis
 * unreachable, or a stream (a shard) without its consumer group (no
 * consumer ever started on it, or Redis lost it): nothing would drain what
 * is accepted. */
static void stream_trouble(rconn *c, const shards *s, char *why, size_t len)
{
    char name[STREAM_NAME_MAX];
    char group[STREAM_NAME_MAX];
    unsigned i;
    int k;

    *why = '\0';
    for (k = 0; c && k < STREAM_KINDS && !*why; k++) {
        stream_group(group, sizeof(group), s->prefix, (stream_kind)k);
        for (i = 0; i < s->n && !*why; i++) {
            shard_name(s, (stream_kind)k, i, name, sizeof(name));
            if (group_exists(c, name, group) == 0)
                snprintf(why, len, "consumer group %s missing on %s: no consumer has started "
                                   "on it", group, name);
        }
    }
    if (c == NULL || rconn_broken(c))
        snprintf(why, len, "redis unreachable");
}

/* "<stream>":{"length":..} under the plain name, the sum of the shards;
 * sharded, also "shards":{"<shard>":{"length":..},..}. */
static int stream_lengths(rconn *c, const shards *s, stream_kind kind, lj_buf *out)
{
    char name[STREAM_NAME_MAX];
    long long n[STREAM_SHARDS_MAX];
    long long sum = 0;
    unsigned i;
    int rc;

    for (i = 0; i < s->n; i++) {
        shard_name(s, kind, i, name, sizeof(name));
        add(&sum, n[i] = xlen(c, name));
    }
    stream_name(name, sizeof(name), s->prefix, kind);
    rc = lj_buf_printf(out, "\"%s\":{\"length\":%lld", name, sum);
    for (i = 0; rc == 0 && s->tagged && i < s->n; i++) {
        shard_name(s, kind, i, name, sizeof(name));
        rc = lj_buf_printf(out, "%s\"%s\":{\"length\":%lld}", i ? "," : ",\"shards\":{", name,
                           n[i]);
    }
    return rc || (s->tagged && lj_buf_puts(out, "}")) || lj_buf_puts(out, "}");
}

/* The old service's keys ("healthy", "timestamp" in epoch s, "streams" the
 * names) and ours ("status", "redis_connected", "traffic_ratio",
 * "stream_info" with the lengths, "flow_control"); "error" when not healthy.
 * 503 when Redis is unreachable. */
static void fill_stream_health(query *q)
{
    rconn *c = q->redis_up ? pool_redis() : NULL;
    shards s = shards_of(q->cfg);
    char name[STREAM_NAME_MAX];
    char ratio[16];
    char why[STREAM_NAME_MAX * 2 + 96];
    int k;
    int rc;

    stream_trouble(c, &s, why, sizeof(why));
    gray_format(q->ratio, ratio, sizeof(ratio));
    rc = lj_buf_printf(&q->out, "{\"healthy\":%s,\"timestamp\":%lld,\"streams\":[",
                       *why ? "false" : "true", (long long)time(NULL));
    for (k = 0; rc == 0 && k < STREAM_KINDS; k++) {
        stream_name(name, sizeof(name), q->cfg->stream_prefix, (stream_kind)k);
        rc = lj_buf_printf(&q->out, "%s\"%s\"", k ? "," : "", name);
    }
    rc = rc || lj_buf_printf(&q->out, "],\"status\":\"%s\",\"redis_connected\":%s,"
                                      "\"traffic_ratio\":%s,\"stream_info\":{",
                             *why ? "degraded" : "healthy", c ? "true" : "false", ratio);
    for (k = 0; rc == 0 && c && k < STREAM_KINDS; k++)
        rc = (k && lj_buf_puts(&q->out, ",")) || stream_lengths(c, &s, (stream_kind)k, &q->out);
    rc = rc || lj_buf_puts(&q->out, "}") || flowctl_render_json(&q->out) ||
         (*why && (lj_buf_puts(&q->out, ",\"error\":") ||
                   lj_buf_json_str(&q->out, why, strlen(why)))) ||
         lj_buf_puts(&q->out, "}");
    q->status = rc ? 500 : (c == NULL || rconn_broken(c)) ? 503 : 200;
    if (c && rconn_broken(c))
        pool_redis_failed();
}

void ops_stream_health(uv_loop_t *loop, const lj_config *cfg, rcluster *link, gray *g,
                       http_request *req)
{
    submit(loop, req, cfg, fill_stream_health, rcluster_ready(link), gray_ratio(g));
}

/* ------------------------------------------------------------------------
 * Figures
 * ------------------------------------------------------------------------ */

/* Midnight today in the time zone $1, as a timestamptz. */
#define SINCE_MIDNIGHT "create_time >= (date_trunc('day', now() AT TIME ZONE $1) AT TIME ZONE $1)"

/* Today's counts -- rows created (create_time) since midnight in the
 * fleet's zone (--timezone) -- opening the answer's object: the old
 * service's keys (today_records, active_devices, active_users, timestamp)
 * and ours (records_today, the same count; alerts_today; timezone). 0,
 * LJ_EPG (logged) or LJ_ENOMEM. */
static int stats_counts(PGconn *pg, const char *zone, lj_buf *out)
{
    const char *params[1] = {zone};
    char when[CLOCK_ISO_MAX];
    PGresult *r;
    int rc;

    r = pg_query_params(pg, "SELECT count(*), count(DISTINCT device_sn), count(DISTINCT user_id),"
                            " (SELECT count(*) FROM t_alert_info WHERE " SINCE_MIDNIGHT ")"
                            " FROM t_user_health_data WHERE " SINCE_MIDNIGHT,
                        1, params);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        log_error("ops", "stats query (time zone %s) failed: %s", zone, PQerrorMessage(pg));
        rc = LJ_EPG;
        goto out;
    }
    clock_iso_now(when, sizeof(when));
    rc = lj_buf_printf(out,
                       "{\"today_records\":%s,\"active_devices\":%s,\"active_users\":%s,"
                       "\"timestamp\":\"%s\",\"timezone\":\"%s\",\"records_today\":%s,"
                       "\"alerts_today\":%s",
                       PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2), when, zone,
                       PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 3))
             ? LJ_ENOMEM
             : 0;
out:
    PQclear(r);
    return rc;
}

/* Appends field 'col' of row 'i' as a JSON string, or null. */
static int alert_str(lj_buf *out, const PGresult *r, int i, int col)
{
    if (PQgetisnull(r, i, col))
        return lj_buf_puts(out, "null");
    return lj_buf_json_str(out, PQgetvalue(r, i, col), (size_t)PQgetlength(r, i, col));
}

/* Appends row 'i' of the latest-alerts query as one JSON object. A value
 * PostgreSQL prints as NaN or Infinity is not JSON: null then. */
static int alert_json(lj_buf *out, const PGresult *r, int i)
{
    const char *v = PQgetvalue(r, i, 3);
    int finite = !PQgetisnull(r, i, 3) &&
                 ((v[0] >= '0' && v[0] <= '9') || (v[0] == '-' && v[1] >= '0' && v[1] <= '9'));

    return lj_buf_printf(out, "%s{\"id\":%s,\"device_sn\":", i ? "," : "",
                         PQgetvalue(r, i, 0)) ||
           alert_str(out, r, i, 1) || lj_buf_puts(out, ",\"alert_type\":") ||
           alert_str(out, r, i, 2) ||
           lj_buf_printf(out, ",\"value\":%s,\"level\":", finite ? v : "null") ||
           alert_str(out, r, i, 4) || lj_buf_puts(out, ",\"status\":") ||
           alert_str(out, r, i, 5) || lj_buf_puts(out, ",\"alert_time\":") ||
           alert_str(out, r, i, 6) || lj_buf_puts(out, ",\"create_time\":") ||
           alert_str(out, r, i, 7) || lj_buf_puts(out, "}")
               ? LJ_ENOMEM
               : 0;
}

/* Appends ,"latest_alerts":[...]: the newest 10 rows of t_alert_info (by
 * id: the primary key index, cheap at any table size), no per-device list.
 * 0, LJ_EPG (logged) or LJ_ENOMEM. */
static int stats_alerts(PGconn *pg, lj_buf *out)
{
    PGresult *r;
    int rc;
    int i;

#define ISO_UTC(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
    r = pg_query(pg, "SELECT id, device_sn, alert_type, alert_value, level, status, "
                   ISO_UTC("alert_time") ", " ISO_UTC("create_time")
                   " FROM t_alert_info ORDER BY id DESC LIMIT 10");
#undef ISO_UTC
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        log_error("ops", "latest alerts query failed: %s", PQerrorMessage(pg));
        rc = LJ_EPG;
        goto out;
    }
    rc = lj_buf_puts(out, ",\"latest_alerts\":[") ? LJ_ENOMEM : 0;
    for (i = 0; rc == 0 && i < PQntuples(r); i++)
        rc = alert_json(out, r, i);
    if (rc == 0 && lj_buf_puts(out, "]") != 0)
        rc = LJ_ENOMEM;
out:
    PQclear(r);
    return rc;
}

/* Appends ,"deliveries":[{"channel":..,"status":..,"n":..},...]: alert
 * deliveries (t_alert_delivery, docs/alerts.md) last changed in the past
 * 24 h, per channel and status; bounded by the update_time index and 64
 * groups. When the query fails (the table predates migration 007, say) the
 * panel gets null and the rest of /api/stats still answers. ENOMEM only. */
static int stats_deliveries(PGconn *pg, lj_buf *out)
{
    PGresult *r = pg_query(pg, "SELECT channel, status, count(*) FROM t_alert_delivery"
                               " WHERE update_time > now() - interval '24 hours'"
                               " GROUP BY channel, status ORDER BY channel, status LIMIT 64");
    int rc = 0;
    int i;

    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        log_warn("ops", "delivery counts query failed: %s", PQerrorMessage(pg));
        PQclear(r);
        return lj_buf_puts(out, ",\"deliveries\":null") ? LJ_ENOMEM : 0;
    }
    rc = lj_buf_puts(out, ",\"deliveries\":[");
    for (i = 0; rc == 0 && i < PQntuples(r); i++)
        rc = lj_buf_puts(out, i ? ",{\"channel\":" : "{\"channel\":") ||
             alert_str(out, r, i, 0) || lj_buf_puts(out, ",\"status\":") ||
             alert_str(out, r, i, 1) || lj_buf_printf(out, ",\"n\":%s}", PQgetvalue(r, i, 2));
    if (rc == 0)
        rc = lj_buf_puts(out, "]");
    PQclear(r);
    return rc ? LJ_ENOMEM : 0;
}

static void fill_stats(query *q)
{
    PGconn *pg = pool_pg();
    int rc;

    if (pg == NULL) {
        q->status = 503;
        lj_buf_puts(&q->out, "{\"status\":\"error\",\"message\":\"postgresql unavailable\"}");
        return;
    }
    if ((rc = stats_counts(pg, q->cfg->timezone, &q->out)) == 0 &&
        (rc = stats_alerts(pg, &q->out)) == 0 && (rc = stats_deliveries(pg, &q->out)) == 0 &&
        lj_buf_puts(&q->out, "}") != 0)
        rc = LJ_ENOMEM;
    if (rc == LJ_EPG) {
        lj_buf_reset(&q->out);
        lj_buf_puts(&q->out, "{\"status\":\"error\",\"message\":\"statistics unavailable\"}");
    } else if (rc != 0) {
        lj_buf_cleanup(&q->out);    /* answer() says "out of memory" */
    }
    q->status = rc == 0 ? 200 : rc == LJ_EPG ? 503 : 500;
    if (PQstatus(pg) != CONNECTION_OK)
        pool_pg_failed();
}

/* /api/stats runs one query at a time per process; the others are answered
 * from its last result (docs/decisions.md). */
static struct {
    pthread_mutex_t mu;
    char *body;                     /* the last 200 answer, or NULL */
    size_t len;
    uint64_t at_ns;
    int in_flight;
} stats_cache = {PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0, 0};

/* Loop: keeps a 200 answer; the next query may go. */
static void stats_after(query *q)
{
    char *copy = q->status == 200 ? malloc(q->out.len + 1) : NULL;

    pthread_mutex_lock(&stats_cache.mu);
    if (copy) {
        memcpy(copy, q->out.data, q->out.len);
        free(stats_cache.body);
        stats_cache.body = copy;
        stats_cache.len = q->out.len;
        stats_cache.at_ns = uv_hrtime();
    }
    stats_cache.in_flight = 0;
    pthread_mutex_unlock(&stats_cache.mu);
}

/* Copies the cached answer into 'out' while it is fresh and returns 1 (-1:
 * out of memory). Else 0, and '*go' says whether this caller runs the query
 * (it is then in flight); a stale answer is never served, so a hung
 * PostgreSQL shows as 503, not as old figures. */
static int stats_cached(const lj_config *cfg, lj_buf *out, int *go)
{
    uint64_t max_age = (uint64_t)cfg->stats_cache_ms * 1000000ull;
    int hit;
    int rc = 0;

    pthread_mutex_lock(&stats_cache.mu);
    hit = stats_cache.body && uv_hrtime() - stats_cache.at_ns < max_age;
    if (hit)
        rc = lj_buf_append(out, stats_cache.body, stats_cache.len) == 0 ? 1 : -1;
    *go = !hit && !stats_cache.in_flight;
    if (*go)
        stats_cache.in_flight = 1;
    pthread_mutex_unlock(&stats_cache.mu);
    return rc;
}

void ops_stats(uv_loop_t *loop, const lj_config *cfg, http_request *req)
{
    query *q;
    lj_buf b;
    int go;
    int hit;

    lj_buf_init(&b);
    hit = stats_cached(cfg, &b, &go);
    if (hit > 0)
        http_respond(req, 200, NULL, b.data, b.len);
    else if (hit < 0)
        http_respond_error(req, 500, "out of memory");
    else if (!go)
        ingest_unavailable(req, "statistics are being computed, retry later");
    lj_buf_cleanup(&b);
    if (!go)
        return;
    if ((q = calloc(1, sizeof(*q))) == NULL) {
        stats_after(&(query){.status = 500});
        http_respond_error(req, 500, "out of memory");
        return;
    }
    q->req = req;
    q->cfg = cfg;
    q->fill = fill_stats;
    q->after = stats_after;
    start(loop, q, cfg->pool_request_timeout_ms);
}

void ops_cleanup(void)
{
    free(stats_cache.body);
    stats_cache.body = NULL;
}

/* Appends the flow-control and conservation keys inside the JSON object
 * that 'b' holds. */
static int join_flow_control(lj_buf *b, const ledger *l)
{
    if (b->len == 0 || b->data[b->len - 1] != '}')
        return LJ_EINVAL;
    b->data[--b->len] = '\0';
    return flowctl_render_json(b) || ledger_render_json(l, b) || lj_buf_puts(b, "}")
               ? LJ_ENOMEM : 0;
}

void ops_stream_metrics(http_request *req, const ledger *l)
{
    lj_buf b;

    lj_buf_init(&b);
    if (stats_render_stream_metrics(&b) != 0 || join_flow_control(&b, l) != 0)
        http_respond_error(req, 500, "out of memory");
    else
        http_respond(req, 200, NULL, b.data, b.len);
    lj_buf_cleanup(&b);
}

void ops_metrics(http_request *req, const ledger *l)
{
    lj_buf b;

    lj_buf_init(&b);
    if (stats_render_prometheus(&b) != 0 || flowctl_render_prometheus(&b) != 0 ||
        ledger_render_prometheus(l, &b) != 0 || legacy_render_prometheus(&b) != 0)
        http_respond_error(req, 500, "out of memory");
    else
        http_respond_typed(req, 200, "text/plain; version=0.0.4", NULL, b.data, b.len);
    lj_buf_cleanup(&b);
}

/* ------------------------------------------------------------------------
 * /api/trace: where is an upload now?
 * ------------------------------------------------------------------------ */

typedef struct trace_query {
    query q;                        /* first: the pool functions see a query */
    char stream_id[48];
    char shard[8];                  /* ?shard=K, "" when not given */
    char device_sn[65];
    char ts[32];
} trace_query;

/* Reads "name=value" from 'query' into 'out' (no decoding: the values we
 * accept are tokens). */
static int query_param(const char *query, const char *name, char *out, size_t outlen)
{
    size_t nl = strlen(name);
    const char *p = query;

    while (p && *p) {
        if (strncmp(p, name, nl) == 0 && p[nl] == '=') {
            size_t len = strcspn(p + nl + 1, "&");

            if (len == 0 || len >= outlen)
                return -1;
            memcpy(out, p + nl + 1, len);
            out[len] = '\0';
            return 0;
        }
        p = strchr(p, '&');
        if (p)
            p++;
    }
    return -1;
}

static int is_stream_id(const char *s)
{
    size_t digits = strspn(s, "0123456789");

    return digits > 0 && s[digits] == '-' && s[digits + 1] &&
           strspn(s + digits + 1, "0123456789") == strlen(s + digits + 1);
}

/* A trace query's rows, or NULL when PostgreSQL could not be asked (a lost
 * connection is handed back to the pool). */
static PGresult *trace_sql(const char *sql, int n, const char *const *params)
{
    PGconn *pg = pool_pg();
    PGresult *r;

    if (pg == NULL)
        return NULL;
    r = pg_query_params(pg, sql, n, params);
    if (PQresultStatus(r) == PGRES_TUPLES_OK)
        return r;
    PQclear(r);
    if (PQstatus(pg) != CONNECTION_OK)
        pool_pg_failed();
    return NULL;
}

/* The row(s) stored for an entry, all shards together (one shard), or for
 * a reading: 1 and the keys in 'out', 0 when none, -1 when PostgreSQL
 * could not be asked. A reading's answer names its entry's shard when
 * there are shards. */
static int trace_rows(trace_query *t, lj_buf *out)
{
    const char *by_reading[2] = {t->device_sn, t->ts};
    const char *by_entry[1] = {t->stream_id};
    PGresult *r;
    int n;

    if (t->stream_id[0])
        r = trace_sql("SELECT count(*), max(create_time)::text, min(device_sn), NULL"
                      " FROM t_user_health_data WHERE stream_id = $1",
                      1, by_entry);
    else
        r = trace_sql("SELECT count(*), max(create_time)::text, max(stream_id),"
                      " max(stream_shard)::text"
                      " FROM t_user_health_data WHERE device_sn = $1"
                      " AND ts = to_timestamp($2::bigint / 1000.0)",
                      2, by_reading);
    if (r == NULL)
        return -1;
    n = atoi(PQgetvalue(r, 0, 0));
    if (n > 0) {
        lj_buf_printf(out, "\"state\":\"stored\",\"rows\":%d,\"table\":\"t_user_health_data\","
                           "\"commit_time\":\"%s\",\"%s\":\"%s\"",
                      n, PQgetvalue(r, 0, 1), t->stream_id[0] ? "device_sn" : "stream_id",
                      PQgetisnull(r, 0, 2) ? "" : PQgetvalue(r, 0, 2));
        if (t->q.cfg->stream_shards > 1 && !PQgetisnull(r, 0, 3))
            lj_buf_printf(out, ",\"shard\":%s", PQgetvalue(r, 0, 3));
    }
    PQclear(r);
    return n > 0;
}

/* Pending on a consumer: 1 with the keys, 0 when not pending. */
static int trace_pending(rconn *c, const trace_query *t, const char *stream,
                         const char *group, lj_buf *out)
{
    const char *argv[] = {"XPENDING", stream, group, t->stream_id, t->stream_id, "1"};
    redisReply *r = rconn_command(c, stream, 6, argv);
    int found = 0;

    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
        r->element[0]->type == REDIS_REPLY_ARRAY && r->element[0]->elements >= 4) {
        const redisReply *p = r->element[0];

        lj_buf_puts(out, "\"state\":\"pending\",\"consumer\":");
        lj_buf_json_str(out, p->element[1]->str, p->element[1]->len);
        lj_buf_printf(out, ",\"idle_ms\":%lld,\"deliveries\":%lld", p->element[2]->integer,
                      p->element[3]->integer);
        found = 1;
    }
    if (r)
        freeReplyObject(r);
    return found;
}

/* In the dead letters: 1 with the keys, 0 when not there. */
static int trace_dead(rconn *c, const trace_query *t, const char *stream, lj_buf *out)
{
    char dead[STREAM_KEY_MAX];
    const char *argv[] = {"XRANGE", dead, "-", "+", "COUNT", "10000"};
    redisReply *r;
    size_t i;
    int found = 0;

    stream_side_key(dead, sizeof(dead), stream, STREAM_SIDE_DEAD);
    r = rconn_command(c, dead, 6, argv);
    for (i = 0; !found && r && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        const redisReply *e = r->element[i];
        const redisReply *id;
        const redisReply *reason;

        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2)
            continue;
        id = rds_map_get(e->element[1], STREAM_DEAD_ID);
        reason = rds_map_get(e->element[1], STREAM_DEAD_REASON);
        if (id && id->type == REDIS_REPLY_STRING && strcmp(id->str, t->stream_id) == 0) {
            lj_buf_puts(out, "\"state\":\"dead_lettered\",\"reason\":");
            if (reason && reason->type == REDIS_REPLY_STRING)
                lj_buf_json_str(out, reason->str, reason->len);
            else
                lj_buf_puts(out, "null");
            lj_buf_puts(out, ",\"dead_letter_id\":");
            lj_buf_json_str(out, e->element[0]->str, e->element[0]->len);
            found = 1;
        }
    }
    if (r)
        freeReplyObject(r);
    return found;
}

/* In t_dead_letter (every dead letter, also those trimmed from the Redis
 * copy): 1 with the keys, 0 when not there or PostgreSQL cannot be asked. */
static int trace_dead_kept(const trace_query *t, const char *stream, lj_buf *out)
{
    const char *params[2] = {stream, t->stream_id};
    PGconn *pg = pool_pg();
    PGresult *r;
    int found;

    if (pg == NULL)
        return 0;
    r = pg_query_params(pg, "SELECT reason, dead_time::text FROM t_dead_letter"
                            " WHERE stream = $1 AND entry_id = $2", 2, params);
    found = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
    if (found) {
        lj_buf_puts(out, "\"state\":\"dead_lettered\",\"reason\":");
        lj_buf_json_str(out, PQgetvalue(r, 0, 0), strlen(PQgetvalue(r, 0, 0)));
        lj_buf_printf(out, ",\"dead_time\":\"%s\"", PQgetvalue(r, 0, 1));
    } else if (PQstatus(pg) != CONNECTION_OK) {
        pool_pg_failed();
    }
    PQclear(r);
    return found;
}

/* Still in the stream and not yet delivered to the group. */
static int trace_in_stream(rconn *c, const trace_query *t, const char *stream,
                           lj_buf *out)
{
    const char *argv[] = {"XRANGE", stream, t->stream_id, t->stream_id};
    redisReply *r = rconn_command(c, stream, 4, argv);
    int found = r && r->type == REDIS_REPLY_ARRAY && r->elements == 1;

    if (found)
        lj_buf_puts(out, "\"state\":\"in_stream\"");
    if (r)
        freeReplyObject(r);
    return found;
}

/* The entry in one health shard's Redis keys or dead letters: 1 with the
 * keys in 'out', 0 when not there. */
static int trace_shard(rconn *c, const trace_query *t, const char *stream, const char *group,
                       lj_buf *out)
{
    return trace_pending(c, t, stream, group, out) || trace_dead(c, t, stream, out) ||
           trace_dead_kept(t, stream, out) || trace_in_stream(c, t, stream, out);
}

/* With one shard: the entry in the stream's Redis keys or dead letters: 1
 * found, 0 not, -1 when Redis could not be asked. */
static int trace_one_stream(query *q, const trace_query *t)
{
    shards s = shards_of(q->cfg);
    char stream[STREAM_NAME_MAX];
    char group[STREAM_NAME_MAX];
    rconn *c = pool_redis();
    int found;

    if (c == NULL)
        return -1;
    stream_group(group, sizeof(group), s.prefix, STREAM_HEALTH);
    shard_name(&s, STREAM_HEALTH, 0, stream, sizeof(stream));
    found = trace_shard(c, t, stream, group, &q->out);
    if (rconn_broken(c))
        pool_redis_failed();
    return found ? 1 : rconn_broken(c) ? -1 : 0;
}

/* With shards an entry is (shard, ID), and one ID may be an entry of
 * several shards: what each holder says of it. */
typedef struct trace_hit {
    int shard;              /* -1: rows stored before migration 012 (no shard) */
    lj_buf keys;
} trace_hit;

typedef struct trace_hits {
    trace_hit *v;
    size_t n;
    size_t cap;
    int unread;             /* a shard's Redis did not answer */
} trace_hits;

/* A holder more, or NULL when there is no room (more than the rows of
 * every shard number a row may carry and every shard of now). */
static trace_hit *hit_add(trace_hits *h, int shard)
{
    trace_hit *x;

    if (h->n == h->cap)
        return NULL;
    x = &h->v[h->n++];
    x->shard = shard;
    lj_buf_init(&x->keys);
    return x;
}

static int hit_of(const trace_hits *h, int shard)
{
    size_t i;

    for (i = 0; i < h->n; i++)
        if (h->v[i].shard == shard)
            return 1;
    return 0;
}

/* The rows of the ID, per shard (of t->shard only when given; rows of no
 * shard match any): 0, or -1 when PostgreSQL could not be asked. */
static int hits_rows(const trace_query *t, trace_hits *h)
{
    const char *params[2] = {t->stream_id, t->shard[0] ? t->shard : NULL};
    PGresult *r = trace_sql("SELECT stream_shard, count(*), max(create_time)::text,"
                            " min(device_sn) FROM t_user_health_data WHERE stream_id = $1"
                            " AND ($2::smallint IS NULL OR stream_shard IS NULL"
                            " OR stream_shard = $2::smallint)"
                            " GROUP BY stream_shard ORDER BY stream_shard NULLS FIRST",
                            2, params);
    int i;

    if (r == NULL)
        return -1;
    for (i = 0; i < PQntuples(r); i++) {
        trace_hit *x = hit_add(h, PQgetisnull(r, i, 0) ? -1 : atoi(PQgetvalue(r, i, 0)));

        if (x == NULL)
            break;
        lj_buf_printf(&x->keys, "\"state\":\"stored\",\"rows\":%s,"
                                "\"table\":\"t_user_health_data\",\"commit_time\":\"%s\","
                                "\"device_sn\":",
                      PQgetvalue(r, i, 1), PQgetvalue(r, i, 2));
        lj_buf_json_str(&x->keys, PQgetvalue(r, i, 3), strlen(PQgetvalue(r, i, 3)));
    }
    PQclear(r);
    return 0;
}

/* The shards (t->shard only, when given) whose rows did not name the ID:
 * in their Redis keys or dead letters, each on its master. Rows of no
 * shard (before migration 012) are the answer as they were: not asked. */
static int hits_redis(query *q, const trace_query *t, trace_hits *h)
{
    shards s = shards_of(q->cfg);
    char stream[STREAM_NAME_MAX];
    char group[STREAM_NAME_MAX];
    unsigned from = t->shard[0] ? (unsigned)atoi(t->shard) : 0;
    unsigned to = t->shard[0] ? from + 1 : s.n;
    trace_hit *x;
    rconn *c;
    unsigned k;

    if (hit_of(h, -1))
        return 0;
    if ((c = pool_redis()) == NULL)
        return -1;
    stream_group(group, sizeof(group), s.prefix, STREAM_HEALTH);
    for (k = from; k < to; k++) {
        lj_buf keys;

        if (hit_of(h, (int)k))
            continue;
        shard_name(&s, STREAM_HEALTH, k, stream, sizeof(stream));
        lj_buf_init(&keys);
        if (trace_shard(c, t, stream, group, &keys) && (x = hit_add(h, (int)k)) != NULL)
            x->keys = keys;
        else
            lj_buf_cleanup(&keys);
        h->unread |= rconn_broken(c);
    }
    if (h->unread)
        pool_redis_failed();
    return 0;
}

static void hit_json(lj_buf *out, const trace_hit *x)
{
    lj_buf_append(out, x->keys.data, x->keys.len);
    if (x->shard >= 0)
        lj_buf_printf(out, ",\"shard\":%d", x->shard);
}

/* With shards: one holder answers as with one shard, plus "shard"; more
 * than one, "ambiguous" with each ("entries"); none, unknown. A shard whose
 * Redis did not answer makes it "incomplete" (503 when nothing was found). */
static int trace_sharded(query *q, const trace_query *t)
{
    /* every shard a row may name (smallint, written below STREAM_SHARDS_MAX),
     * rows of none, and every shard of now */
    size_t cap = STREAM_SHARDS_MAX + 1 + (size_t)q->cfg->stream_shards;
    trace_hits h = {calloc(cap, sizeof(trace_hit)), 0, cap, 0};
    size_t i;
    int rc = -1;

    if (h.v == NULL || hits_rows(t, &h) != 0 || hits_redis(q, t, &h) != 0 ||
        (h.n == 0 && h.unread))
        goto out;
    rc = 0;
    if (h.n == 0)
        lj_buf_puts(&q->out, "\"state\":\"unknown\"");
    else if (h.n == 1)
        hit_json(&q->out, &h.v[0]);
    else
        lj_buf_puts(&q->out, "\"state\":\"ambiguous\",\"shards\":[");
    for (i = 0; h.n > 1 && i < h.n; i++)
        lj_buf_printf(&q->out, "%s%d", i ? "," : "", h.v[i].shard);
    for (i = 0; h.n > 1 && i < h.n; i++) {
        lj_buf_puts(&q->out, i ? ",{" : "],\"entries\":[{");
        hit_json(&q->out, &h.v[i]);
        lj_buf_puts(&q->out, "}");
    }
    lj_buf_puts(&q->out, h.n > 1 ? "]" : "");
    if (h.unread)
        lj_buf_puts(&q->out, ",\"incomplete\":true");
out:
    for (i = 0; h.v && i < h.n; i++)
        lj_buf_cleanup(&h.v[i].keys);
    free(h.v);
    return rc;
}

static void fill_trace(query *q)
{
    trace_query *t = (trace_query *)q;
    int rc;

    q->status = 200;
    lj_buf_puts(&q->out, "{");
    if (t->stream_id[0] && q->cfg->stream_shards > 1) {
        rc = trace_sharded(q, t);
        goto out;
    }
    /* Order matters: a stored entry may still be in the stream, and a
     * pending one has rows only once its batch commits. */
    if ((rc = trace_rows(t, &q->out)) != 0)
        goto out;
    if (t->stream_id[0] && (rc = trace_one_stream(q, t)) != 0)
        goto out;
    lj_buf_puts(&q->out, "\"state\":\"unknown\"");
out:
    lj_buf_puts(&q->out, "}");
    if (rc < 0) {
        lj_buf_reset(&q->out);
        q->status = 503;
        lj_buf_puts(&q->out, "{\"status\":\"error\",\"message\":\"trace unavailable\"}");
    }
}

/* 1 when 'query' has a parameter named 'name'. */
static int has_param(const char *query, const char *name)
{
    size_t nl = strlen(name);
    const char *p = query;

    while (p && *p) {
        if (strncmp(p, name, nl) == 0 && (p[nl] == '=' || p[nl] == '&' || !p[nl]))
            return 1;
        p = strchr(p, '&');
        if (p)
            p++;
    }
    return 0;
}

/* ?shard=K of /api/trace/<id>: 0 when absent or valid, -1 else. */
static int trace_shard_param(const lj_config *cfg, const char *query, trace_query *t)
{
    if (!has_param(query, "shard"))
        return 0;
    if (query_param(query, "shard", t->shard, sizeof(t->shard)) != 0 ||
        strspn(t->shard, "0123456789") != strlen(t->shard) || strlen(t->shard) > 3 ||
        atoi(t->shard) >= cfg->stream_shards)
        return -1;
    return 0;
}

void ops_trace(uv_loop_t *loop, const lj_config *cfg, http_request *req, const char *stream_id)
{
    trace_query *t = calloc(1, sizeof(*t));

    if (t == NULL) {
        http_respond_error(req, 500, "out of memory");
        return;
    }
    if (stream_id && *stream_id) {
        if (!is_stream_id(stream_id) || strlen(stream_id) >= sizeof(t->stream_id))
            goto bad;
        memcpy(t->stream_id, stream_id, strlen(stream_id) + 1);
        if (trace_shard_param(cfg, req->query, t) != 0)
            goto bad;
    } else if (query_param(req->query, "device_sn", t->device_sn, sizeof(t->device_sn)) != 0 ||
               !rec_is_token(t->device_sn, REC_SN_MAX) ||
               query_param(req->query, "ts", t->ts, sizeof(t->ts)) != 0 ||
               strspn(t->ts, "0123456789") != strlen(t->ts)) {
        goto bad;
    }
    t->q.req = req;
    t->q.cfg = cfg;
    t->q.fill = fill_trace;
    start(loop, &t->q, cfg->pool_request_timeout_ms);
    return;
bad:
    free(t);
    http_respond_error(req, 400, "trace by /api/trace/<stream_id>[?shard=K] (K below"
                                 " --stream-shards) or ?device_sn=..&ts=<ms>");
}
