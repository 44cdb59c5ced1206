#include "admin.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "clock.h"
#include "err.h"
#include "log.h"
#include "pg.h"
#include "pool.h"
#include "record.h"
#include "stats.h"

typedef struct change {
    http_request *req;
    uv_loop_t *loop;
    gray *g;
    int new_ratio;
    int old_ratio;
    int rollback;
    int legacy_only;    /* POST /api/legacy_path: the ratio is not changed */
    int legacy_was;     /* the legacy switch before: 1 retired, 0 on, -1 not touched */
    int legacy_now;     /* and after */
    char caller[64];
} change;

static const char redis_down[] =
    "{\"success\":false,\"message\":\"redis unavailable: ratio not changed\"}";

static void answer(http_request *req, int status, const char *headers, const char *body)
{
    http_respond(req, status, headers, body, strlen(body));
}

/* Compares without an early exit, so timing does not tell how much matched. */
static int equal_secret(const char *a, const char *b)
{
    size_t la = strlen(a);
    size_t lb = strlen(b);
    unsigned char diff = (unsigned char)(la != lb);
    size_t i;

    for (i = 0; i < lb; i++)
        diff |= (unsigned char)(a[i % (la ? la : 1)] ^ b[i]);
    return diff == 0 && la == lb;
}

int admin_authorized(const lj_config *cfg, http_request *req)
{
    const char *auth = req->authorization;

    if (cfg->admin_token[0] == '\0') {
        if (req->remote_is_loopback && !req->forwarded)
            return 1;
        if (req->forwarded) {
            /* A proxy on this host makes every client loopback. */
            log_warn("admin", "refused proxied admin call without a configured token "
                              "remote=%s path=%s", req->remote_addr, req->path);
            http_respond_error(req, 403, "proxied admin calls need a token: configure "
                                         "LJ_ADMIN_TOKEN and send Authorization: Bearer");
            return 0;
        }
        http_respond_error(req, 403, "admin calls are allowed from this host only");
        return 0;
    }
    if (strncmp(auth, "Bearer ", 7) != 0) {
        answer(req, 401, "WWW-Authenticate: Bearer\r\n",
               "{\"status\":\"error\",\"message\":\"admin token required\"}");
        return 0;
    }
    if (!equal_secret(auth + 7, cfg->admin_token)) {
        log_warn("admin", "refused admin call with a wrong token remote=%s", req->remote_addr);
        http_respond_error(req, 403, "admin token refused");
        return 0;
    }
    return 1;
}

static const char *legacy_name(int retired)
{
    return retired ? "retired" : "on";
}

void admin_get_ratio(gray *g, http_request *req)
{
    char ratio[16];
    char body[320];
    int n;

    gray_format(gray_ratio(g), ratio, sizeof(ratio));
    n = snprintf(body, sizeof(body),
                 "{\"current_ratio\":%s,\"description\":\"share of devices whose uploads to "
                 "/upload_health_data take the stream path (0..1)\",\"legacy_path\":\"%s\"}",
                 ratio, legacy_name(gray_legacy_retired(g)));
    http_respond(req, 200, NULL, body, (size_t)n);
}

/* 'd' as a ratio in 1/GRAY_SCALE; -1 when it is not a number in 0..1. */
static int ratio_of(double d)
{
    return isfinite(d) && d >= 0.0 && d <= 1.0 ? (int)lround(d * GRAY_SCALE) : -1;
}

/* The value of "ratio=x" in a query string or form body ('n' bytes). */
static int ratio_from_form(const char *s, size_t n)
{
    char buf[64];
    const char *p = s;
    char *end;
    double d;

    while (p && (size_t)(p - s) < n) {
        if (strncmp(p, "ratio=", 6) == 0) {
            size_t len = strcspn(p + 6, "&");

            if (len == 0 || len >= sizeof(buf) || (size_t)(p + 6 - s) + len > n)
                return -1;
            memcpy(buf, p + 6, len);
            buf[len] = '\0';
            d = strtod(buf, &end);
            return *end == '\0' ? ratio_of(d) : -1;
        }
        p = memchr(p, '&', n - (size_t)(p - s));
        if (p)
            p++;
    }
    return -1;
}

/* Reads the new ratio: {"ratio": x} (a number or numeric string), or, as
 * older tools send it, ratio=x in a form body or the query string. */
static int parse_ratio_body(const http_request *req, int *out)
{
    const char *msg;
    const cJSON *v;
    cJSON *root = NULL;
    double d = -1;
    char *end;
    int r = -1;

    if (rec_json_parse(req->body, req->body_len, 4, &root, &msg) == 0) {
        v = cJSON_GetObjectItemCaseSensitive(root, "ratio");
        if (cJSON_IsNumber(v))
            d = v->valuedouble;
        else if (cJSON_IsString(v) && v->valuestring && *v->valuestring &&
                 ((d = strtod(v->valuestring, &end)), *end != '\0'))
            d = -1;
        r = ratio_of(d);
        rec_json_free(root);
    } else {
        r = ratio_from_form(req->body, req->body_len);
        if (r < 0 && req->body_len == 0)
            r = ratio_from_form(req->query, strlen(req->query));
    }
    if (r < 0)
        return -1;
    *out = r;
    return 0;
}

/* One row of t_stream_ratio_audit from 'c', with 'new_ratio' and 'reason';
 * a failure is logged (a lost connection is dropped for the next row). */
static void audit_row(const change *c, int new_ratio, const char *reason)
{
    PGconn *pg = pool_pg();
    char old_s[32];
    char new_s[32];
    const char *params[4];
    PGresult *r;

    if (pg == NULL) {
        log_error("admin", "audit row not written: postgresql unavailable");
        return;
    }
    snprintf(new_s, sizeof(new_s), "%.4f", (double)new_ratio / GRAY_SCALE);
    snprintf(old_s, sizeof(old_s), "%.4f", (double)c->old_ratio / GRAY_SCALE);
    params[0] = old_s;
    params[1] = new_s;
    params[2] = c->caller;
    params[3] = reason;
    r = pg_query_params(pg, "INSERT INTO t_stream_ratio_audit (old_ratio, new_ratio, caller,"
                            " reason) VALUES ($1, $2, $3, $4)", 4, params);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        log_error("admin", "audit row not written: %s", PQerrorMessage(pg));
        if (PQstatus(pg) != CONNECTION_OK)
            pool_pg_failed();
    }
    PQclear(r);
}

/* A changed legacy switch is a row of its own (the ratio unchanged, reason
 * legacy_retired or legacy_restored), before the ratio's row. */
static void audit_work(void *arg)
{
    change *c = arg;

    if (c->legacy_was >= 0 && c->legacy_was != c->legacy_now)
        audit_row(c, c->old_ratio, c->legacy_now ? "legacy_retired" : "legacy_restored");
    if (!c->legacy_only)
        audit_row(c, c->new_ratio, c->rollback ? "emergency_rollback" : "ratio_change");
}

static void audit_done(void *arg, int late)
{
    (void)late;     /* no deadline */
    free(arg);
}

/* Submits the audit rows of 'c' and gives it up. */
static void audit_later(change *c)
{
    c->req = NULL;
    if (pool_submit(c->loop, audit_work, audit_done, c) != 0) {
        log_error("admin", "audit row not written: pool unavailable");
        free(c);
    }
}


/* The rollback answer, in the old service's shape (SPEC §4): its
 * "current_metrics" is the summary of /api/stream_metrics, and
 * "consumers_stopped" false: ours keep draining what was accepted. */
static void rollback_answer(http_request *req, const char *old_ratio)
{
    char when[CLOCK_ISO_MAX];
    lj_buf b;

    clock_iso_now(when, sizeof(when));
    lj_buf_init(&b);
    if (lj_buf_printf(&b, "{\"success\":true,\"rollback_time\":\"%s\",\"traffic_ratio\":0,"
                          "\"old_ratio\":%s,\"legacy_path\":\"on\",\"consumers_stopped\":false,"
                          "\"current_metrics\":",
                      when, old_ratio) != 0 ||
        stats_render_summary(&b) != 0 ||
        lj_buf_puts(&b, ",\"message\":\"emergency rollback: every routed upload now takes the "
                        "legacy path; consumers keep draining the streams\"}") != 0)
        http_respond_error(req, 500, "out of memory (the rollback itself is done)");
    else
        http_respond(req, 200, NULL, b.data, b.len);
    lj_buf_cleanup(&b);
}

static void on_changed(int ok, int old_ratio, void *arg)
{
    change *c = arg;
    char old_s[16];
    char new_s[16];
    char body[512];
    int n;

    if (!ok) {
        answer(c->req, 503, "Retry-After: 1\r\n", redis_down);
        free(c);
        return;
    }
    gray_format(old_ratio, old_s, sizeof(old_s));
    gray_format(c->new_ratio, new_s, sizeof(new_s));
    log_info("admin", "traffic ratio %s -> %s by %s%s", old_s, new_s, c->caller,
             c->rollback ? " (emergency rollback)" : "");
    if (c->rollback) {
        rollback_answer(c->req, old_s);
    } else {
        n = snprintf(body, sizeof(body),
                     "{\"success\":true,\"old_ratio\":%s,\"new_ratio\":%s,"
                     "\"legacy_path\":\"%s\",\"message\":\"traffic ratio changed from %s to "
                     "%s%s\"}",
                     old_s, new_s, legacy_name(c->legacy_was >= 0 ? 0 : gray_legacy_retired(c->g)),
                     old_s, new_s, c->legacy_was == 1 ? "; legacy path restored" : "");
        http_respond(c->req, 200, NULL, body, (size_t)n);
    }
    /* The audit row is written after the answer: a rollback must not wait
     * for (or fail with) PostgreSQL. */
    c->old_ratio = old_ratio;
    audit_later(c);
}

/* A ratio below 1 (a rollback's 0 too) restores a retired legacy path
 * first (docs/decisions.md), then sets the ratio: with the legacy path
 * retired, the ratio alone would change nothing. */
static void on_legacy_restored(int ok, int was_retired, void *arg)
{
    change *c = arg;

    if (!ok || gray_set(c->g, c->new_ratio, on_changed, c) != 0) {
        answer(c->req, 503, "Retry-After: 1\r\n", redis_down);
        free(c);
        return;
    }
    if (was_retired)
        log_info("admin", "legacy path restored by %s (%s)", c->caller,
                 c->rollback ? "emergency rollback" : "ratio below 1");
    c->legacy_was = was_retired;
}

static change *change_new(uv_loop_t *loop, gray *g, http_request *req)
{
    change *c = calloc(1, sizeof(*c));

    if (c == NULL) {
        http_respond_error(req, 500, "out of memory");
        return NULL;
    }
    c->req = req;
    c->loop = loop;
    c->g = g;
    c->legacy_was = -1;
    snprintf(c->caller, sizeof(c->caller), "%s", req->remote_addr);
    return c;
}

static void change_ratio(uv_loop_t *loop, gray *g, http_request *req, int ratio, int rollback)
{
    change *c = change_new(loop, g, req);
    int rc;

    if (c == NULL)
        return;
    c->new_ratio = ratio;
    c->rollback = rollback;
    rc = ratio < GRAY_SCALE ? gray_set_legacy(g, 0, on_legacy_restored, c)
                            : gray_set(g, ratio, on_changed, c);
    if (rc != 0) {
        free(c);
        answer(req, 503, "Retry-After: 1\r\n", redis_down);
        return;
    }
    http_defer(req);
}

void admin_set_ratio(uv_loop_t *loop, const lj_config *cfg, gray *g, http_request *req)
{
    int ratio;

    if (!admin_authorized(cfg, req))
        return;
    if (parse_ratio_body(req, &ratio) != 0) {
        answer(req, 400, NULL,
               "{\"success\":false,\"message\":\"ratio must be a number from 0 to 1\"}");
        return;
    }
    change_ratio(loop, g, req, ratio, 0);
}

void admin_rollback(uv_loop_t *loop, const lj_config *cfg, gray *g, http_request *req)
{
    if (!admin_authorized(cfg, req))
        return;
    change_ratio(loop, g, req, 0, 1);
}

static void on_legacy_changed(int ok, int was_retired, void *arg)
{
    change *c = arg;
    char body[320];
    int n;

    if (!ok) {
        answer(c->req, 503, "Retry-After: 1\r\n",
               "{\"success\":false,\"message\":\"redis unavailable: legacy path not changed\"}");
        free(c);
        return;
    }
    log_info("admin", "legacy path %s -> %s by %s", legacy_name(was_retired),
             legacy_name(c->legacy_now), c->caller);
    n = snprintf(body, sizeof(body),
                 "{\"success\":true,\"legacy_path\":\"%s\",\"old_legacy_path\":\"%s\","
                 "\"message\":\"%s\"}",
                 legacy_name(c->legacy_now), legacy_name(was_retired),
                 c->legacy_now ? "legacy path retired: routed uploads take the stream path; "
                                 "when it cannot take one, 503 with Retry-After"
                               : "legacy path on: routed uploads follow the ratio and fall "
                                 "back to it");
    http_respond(c->req, 200, NULL, body, (size_t)n);
    c->legacy_was = was_retired;
    if (was_retired == c->legacy_now) {
        free(c);    /* nothing changed: no audit row */
        return;
    }
    audit_later(c);
}

/* {"enabled": true|false}: 1 or 0, -1 for anything else. */
static int parse_enabled(const http_request *req)
{
    const char *msg;
    const cJSON *v;
    cJSON *root = NULL;
    int enabled = -1;

    if (rec_json_parse(req->body, req->body_len, 4, &root, &msg) != 0)
        return -1;
    v = cJSON_GetObjectItemCaseSensitive(root, "enabled");
    if (cJSON_IsObject(root) && cJSON_IsBool(v))
        enabled = cJSON_IsTrue(v);
    rec_json_free(root);
    return enabled;
}

void admin_set_legacy(uv_loop_t *loop, const lj_config *cfg, gray *g, http_request *req)
{
    char ratio[16];
    char body[256];
    change *c;
    int enabled;
    int n;

    if (!admin_authorized(cfg, req))
        return;
    if ((enabled = parse_enabled(req)) < 0) {
        answer(req, 400, NULL,
               "{\"success\":false,\"message\":\"body must be {\\\"enabled\\\":true} or "
               "{\\\"enabled\\\":false}\"}");
        return;
    }
    if (!enabled && gray_ratio(g) != GRAY_SCALE) {
        gray_format(gray_ratio(g), ratio, sizeof(ratio));
        n = snprintf(body, sizeof(body),
                     "{\"success\":false,\"current_ratio\":%s,\"message\":\"the legacy path "
                     "can be retired only at ratio 1 (now %s)\"}", ratio, ratio);
        http_respond(req, 409, NULL, body, (size_t)n);
        return;
    }
    if ((c = change_new(loop, g, req)) == NULL)
        return;
    c->legacy_only = 1;
    c->legacy_now = !enabled;
    c->old_ratio = c->new_ratio = gray_ratio(g);
    if (gray_set_legacy(g, !enabled, on_legacy_changed, c) != 0) {
        free(c);
        answer(req, 503, "Retry-After: 1\r\n",
               "{\"success\":false,\"message\":\"redis unavailable: legacy path not changed\"}");
        return;
    }
    http_defer(req);
}
