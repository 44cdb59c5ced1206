#include "routes.h"

#include <stdio.h>
#include <string.h>

#include "admin.h"
#include "dashboard.h"
#include "ops.h"
#include "stats.h"

typedef void (*route_fn)(routes *rt, http_request *req);

typedef struct route {
    const char *path;
    enum http_method method;
    int id;             /* stats route */
    route_fn fn;
} route;

static void health_v2(routes *rt, http_request *req) { ingest_health_v2(rt->ingest, req); }
static void health(routes *rt, http_request *req) { ingest_health_routed(rt->ingest, req); }
static void health_batch(routes *rt, http_request *req) { ingest_health_batch(rt->ingest, req); }
static void device_v2(routes *rt, http_request *req) { ingest_device_v2(rt->ingest, req); }
static void event_v2(routes *rt, http_request *req) { ingest_event_v2(rt->ingest, req); }
static void device(routes *rt, http_request *req) { ingest_device_routed(rt->ingest, req); }
static void event(routes *rt, http_request *req) { ingest_event_routed(rt->ingest, req); }
static void get_ratio(routes *rt, http_request *req) { admin_get_ratio(rt->gray, req); }

static void set_ratio(routes *rt, http_request *req)
{
    admin_set_ratio(rt->loop, rt->cfg, rt->gray, req);
}

static void rollback(routes *rt, http_request *req)
{
    admin_rollback(rt->loop, rt->cfg, rt->gray, req);
}

static void set_legacy(routes *rt, http_request *req)
{
    admin_set_legacy(rt->loop, rt->cfg, rt->gray, req);
}

static void api_health(routes *rt, http_request *req)
{
    ops_health(rt->loop, rt->cfg, rt->link, rt->gray, req);
}

static void stream_health(routes *rt, http_request *req)
{
    ops_stream_health(rt->loop, rt->cfg, rt->link, rt->gray, req);
}

static void stream_stats(routes *rt, http_request *req)
{
    ops_stream_stats(rt->loop, rt->cfg, req);
}

static void stream_metrics(routes *rt, http_request *req)
{
    ops_stream_metrics(req, rt->ledger);
}

static void api_stats(routes *rt, http_request *req) { ops_stats(rt->loop, rt->cfg, req); }

static void metrics(routes *rt, http_request *req) { ops_metrics(req, rt->ledger); }

static const route table[] = {
    {"/upload_health_data_v2", HTTP_POST, STATS_R_HEALTH_V2, health_v2},
    {"/upload_health_data", HTTP_POST, STATS_R_HEALTH, health},
    {"/upload_health_data_batch", HTTP_POST, STATS_R_HEALTH_BATCH, health_batch},
    {"/upload_device_info_v2", HTTP_POST, STATS_R_DEVICE_V2, device_v2},
    {"/upload_common_event_v2", HTTP_POST, STATS_R_EVENT_V2, event_v2},
    {"/upload_device_info", HTTP_POST, STATS_R_DEVICE, device},
    {"/upload_common_event", HTTP_POST, STATS_R_EVENT, event},
    {"/api/stream_traffic_ratio", HTTP_GET, STATS_R_RATIO, get_ratio},
    {"/api/stream_traffic_ratio", HTTP_POST, STATS_R_RATIO, set_ratio},
    {"/api/emergency_rollback", HTTP_POST, STATS_R_ROLLBACK, rollback},
    {"/api/legacy_path", HTTP_POST, STATS_R_LEGACY, set_legacy},
    {"/api/health", HTTP_GET, STATS_R_API_HEALTH, api_health},
    {"/api/stream_health", HTTP_GET, STATS_R_STREAM_HEALTH, stream_health},
    {"/api/stream_stats", HTTP_GET, STATS_R_STREAM_STATS, stream_stats},
    {"/api/stream_metrics", HTTP_GET, STATS_R_STREAM_METRICS, stream_metrics},
    {"/api/stats", HTTP_GET, STATS_R_API_STATS, api_stats},
    {"/metrics", HTTP_GET, STATS_R_METRICS, metrics},
};

#define N_ROUTES (sizeof(table) / sizeof(table[0]))

static void not_allowed(http_request *req)
{
    static const char body[] = "{\"status\":\"error\",\"message\":\"method not allowed\"}";
    char allow[64] = "Allow: ";
    size_t i;

    for (i = 0; i < N_ROUTES; i++) {
        if (strcmp(table[i].path, req->path) != 0)
            continue;
        if (strlen(allow) > 7)
            strcat(allow, ", ");
        strcat(allow, http_method_str(table[i].method));
    }
    strcat(allow, "\r\n");
    http_respond(req, 405, allow, body, sizeof(body) - 1);
}

/* /api/trace and /api/trace/<stream_id>: the one route with a parameter in
 * its path. Returns 1 when it handled 'req'. */
static int route_trace(routes *rt, http_request *req)
{
    const char *id;

    if (strncmp(req->path, "/api/trace", 10) != 0 || (req->path[10] && req->path[10] != '/'))
        return 0;
    req->route = STATS_R_TRACE;
    if (req->method != HTTP_GET) {
        static const char body[] = "{\"status\":\"error\",\"message\":\"method not allowed\"}";

        http_respond(req, 405, "Allow: GET\r\n", body, sizeof(body) - 1);
        return 1;
    }
    if (!admin_authorized(rt->cfg, req))
        return 1;
    id = req->path[10] == '/' ? req->path + 11 : "";
    ops_trace(rt->loop, rt->cfg, req, id);
    return 1;
}

void route_request(http_request *req, void *arg)
{
    int path_known = 0;
    size_t i;

    if (route_trace(arg, req))
        return;
    if (dashboard_owns(req->path)) {    /* its own whitelist, 404 and 405 */
        req->route = STATS_R_DASHBOARD;
        dashboard_serve(req);
        return;
    }
    for (i = 0; i < N_ROUTES; i++) {
        if (strcmp(table[i].path, req->path) != 0)
            continue;
        req->route = table[i].id;
        if (table[i].method == req->method) {
            table[i].fn(arg, req);
            return;
        }
        path_known = 1;
    }
    req->route = STATS_R_OTHER;
    if (path_known)
        not_allowed(req);
    else
        http_respond_error(req, 404, "no such endpoint");
}
