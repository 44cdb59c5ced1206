#include "ops.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "log.h"
#include "pool.h"
#include "rds.h"
#include "stats.h"
#include "streams.h"

/* A query answered from a pool thread. */
typedef struct query {
    http_request *req;
    const lj_config *cfg;
    void (*fill)(struct query *q);  /* pool thread: writes 'out' and 'status' */
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

static void answer(void *arg)
{
    query *q = arg;

    if (q->status == 500 && q->out.len == 0)
        http_respond_error(q->req, 500, "out of memory");
    else
        http_respond(q->req, q->status, NULL, q->out.data, q->out.len);
    lj_buf_cleanup(&q->out);
    free(q);
}

static void submit(uv_loop_t *loop, http_request *req, const lj_config *cfg,
                   void (*fill)(query *), int redis_up, int ratio)
{
    query *q = calloc(1, sizeof(*q));

    if (q == NULL) {
        http_respond_error(req, 500, "out of memory");
        return;
    }
    q->req = req;
    q->cfg = cfg;
    q->fill = fill;
    q->status = 500;
    q->redis_up = redis_up;
    q->ratio = ratio;
    lj_buf_init(&q->out);
    if (pool_submit(loop, run_fill, answer, q) != 0) {
        free(q);
        http_respond_error(req, 503, "busy, retry later");
        return;
    }
    http_defer(req);
}

/* ------------------------------------------------------------------------
 * /api/health
 * ------------------------------------------------------------------------ */

static int pg_ping(void)
{
    PGconn *pg = pool_pg();
    PGresult *r;
    int ok;

    if (pg == NULL)
        return 0;
    r = PQexec(pg, "SELECT 1");
    ok = PQresultStatus(r) == PGRES_TUPLES_OK;
    PQclear(r);
    if (!ok)
        pool_pg_failed();
    return ok;
}

static void fill_health(query *q)
{
    int pg = pg_ping();
    char ratio[16];

    gray_format(q->ratio, ratio, sizeof(ratio));
    q->status = pg || q->redis_up ? 200 : 503;
    if (lj_buf_printf(&q->out, "{\"status\":\"%s\",\"redis\":%s,\"postgres\":%s,"
                               "\"traffic_ratio\":%s}",
                      pg && q->redis_up ? "healthy" : (pg || q->redis_up ? "degraded" : "down"),
                      q->redis_up ? "true" : "false", pg ? "true" : "false", ratio) != 0)
        lj_buf_cleanup(&q->out);
}

void ops_health(uv_loop_t *loop, rlink *link, gray *g, http_request *req)
{
    submit(loop, req, NULL, fill_health, rlink_ready(link), gray_ratio(g));
}

/* ------------------------------------------------------------------------
 * Streams
 * ------------------------------------------------------------------------ */

static long long xlen(redisContext *c, const char *key)
{
    const char *argv[] = {"XLEN", key};
    redisReply *r = rds_command(c, 2, argv);
    long long n = -1;

    if (r && r->type == REDIS_REPLY_INTEGER)
        n = r->integer;
    if (r)
        freeReplyObject(r);
    return n;
}

static int consumers_json(redisContext *c, const char *stream, const char *group, lj_buf *out)
{
    const char *argv[] = {"XINFO", "CONSUMERS", stream, group};
    redisReply *r = rds_command(c, 4, argv);
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

static int groups_json(redisContext *c, const char *stream, lj_buf *out)
{
    const char *argv[] = {"XINFO", "GROUPS", stream};
    redisReply *r = rds_command(c, 3, argv);
    size_t i;
    int rc = lj_buf_puts(out, "[");

    for (i = 0; rc == 0 && r && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        const redisReply *g = r->element[i];
        const redisReply *name = rds_map_get(g, "name");
        const redisReply *last = rds_map_get(g, "last-delivered-id");

        if (name == NULL || name->type != REDIS_REPLY_STRING || last == NULL ||
            last->type != REDIS_REPLY_STRING)
            continue;
        rc = lj_buf_puts(out, i ? ",{\"name\":" : "{\"name\":") ||
             lj_buf_json_str(out, name->str, name->len) ||
             lj_buf_printf(out, ",\"pending\":%lld,\"lag\":%lld,\"last_delivered_id\":\"%s\","
                                "\"consumers\":",
                           rds_map_int(g, "pending"), rds_map_int(g, "lag"), last->str) ||
             consumers_json(c, stream, name->str, out) || lj_buf_puts(out, "}");
    }
    if (r)
        freeReplyObject(r);
    return rc || lj_buf_puts(out, "]");
}

static void fill_stream_stats(query *q)
{
    redisContext *c = pool_redis();
    char name[STREAM_NAME_MAX];
    char dead[STREAM_NAME_MAX + 8];
    int k;
    int rc;

    if (c == NULL) {
        q->status = 503;
        lj_buf_puts(&q->out, "{\"status\":\"error\",\"message\":\"redis unavailable\"}");
        return;
    }
    rc = lj_buf_puts(&q->out, "{\"streams\":{");
    for (k = 0; rc == 0 && k < STREAM_KINDS; k++) {
        stream_name(name, sizeof(name), q->cfg->stream_prefix, (stream_kind)k);
        snprintf(dead, sizeof(dead), "%s:dead", name);
        rc = lj_buf_printf(&q->out, "%s\"%s\":{\"length\":%lld,\"dead_letters\":%lld,\"groups\":",
                           k ? "," : "", name, xlen(c, name), xlen(c, dead)) ||
             groups_json(c, name, &q->out) || lj_buf_puts(&q->out, "}");
    }
    rc = rc || lj_buf_puts(&q->out, "}}");
    if (c->err)
        pool_redis_failed();
    q->status = rc ? 500 : 200;
}

void ops_stream_stats(uv_loop_t *loop, const lj_config *cfg, http_request *req)
{
    submit(loop, req, cfg, fill_stream_stats, 1, 0);
}

static void fill_stream_health(query *q)
{
    redisContext *c = q->redis_up ? pool_redis() : NULL;
    char name[STREAM_NAME_MAX];
    char ratio[16];
    int k;
    int rc;

    gray_format(q->ratio, ratio, sizeof(ratio));
    rc = lj_buf_printf(&q->out, "{\"status\":\"%s\",\"redis_connected\":%s,\"traffic_ratio\":%s,"
                                "\"streams\":{",
                       c ? "healthy" : "degraded", c ? "true" : "false", ratio);
    for (k = 0; rc == 0 && c && k < STREAM_KINDS; k++) {
        stream_name(name, sizeof(name), q->cfg->stream_prefix, (stream_kind)k);
        rc = lj_buf_printf(&q->out, "%s\"%s\":{\"length\":%lld}", k ? "," : "", name,
                           xlen(c, name));
    }
    rc = rc || lj_buf_puts(&q->out, "}}");
    if (c && c->err)
        pool_redis_failed();
    q->status = rc ? 500 : c ? 200 : 503;
}

void ops_stream_health(uv_loop_t *loop, const lj_config *cfg, rlink *link, gray *g,
                       http_request *req)
{
    submit(loop, req, cfg, fill_stream_health, rlink_ready(link), gray_ratio(g));
}

/* ------------------------------------------------------------------------
 * Figures
 * ------------------------------------------------------------------------ */

static void fill_stats(query *q)
{
    PGconn *pg = pool_pg();
    PGresult *r;

    if (pg == NULL) {
        q->status = 503;
        lj_buf_puts(&q->out, "{\"status\":\"error\",\"message\":\"postgresql unavailable\"}");
        return;
    }
    r = PQexec(pg, "SELECT count(*), count(DISTINCT device_sn), count(DISTINCT user_id),"
                   " (SELECT count(*) FROM t_alert_info"
                   "   WHERE create_time >= date_trunc('day', now()))"
                   " FROM t_user_health_data WHERE ts >= date_trunc('day', now())");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        log_error("ops", "stats query failed: %s", PQerrorMessage(pg));
        q->status = 503;
        lj_buf_puts(&q->out, "{\"status\":\"error\",\"message\":\"statistics unavailable\"}");
    } else {
        q->status = lj_buf_printf(&q->out,
                                  "{\"records_today\":%s,\"active_devices\":%s,"
                                  "\"active_users\":%s,\"alerts_today\":%s}",
                                  PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2),
                                  PQgetvalue(r, 0, 3))
                        ? 500
                        : 200;
    }
    if (PQstatus(pg) != CONNECTION_OK)
        pool_pg_failed();
    PQclear(r);
}

void ops_stats(uv_loop_t *loop, http_request *req)
{
    submit(loop, req, NULL, fill_stats, 1, 0);
}

void ops_stream_metrics(http_request *req)
{
    lj_buf b;

    lj_buf_init(&b);
    if (stats_render_stream_metrics(&b) != 0)
        http_respond_error(req, 500, "out of memory");
    else
        http_respond(req, 200, NULL, b.data, b.len);
    lj_buf_cleanup(&b);
}

void ops_metrics(http_request *req)
{
    lj_buf b;

    lj_buf_init(&b);
    if (stats_render_prometheus(&b) != 0)
        http_respond_error(req, 500, "out of memory");
    else
        http_respond_typed(req, 200, "text/plain; version=0.0.4", NULL, b.data, b.len);
    lj_buf_cleanup(&b);
}
