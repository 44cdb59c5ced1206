#include "routes.h"

#include <stdio.h>
#include <string.h>

typedef void (*route_fn)(routes *rt, http_request *req);

typedef struct route {
    const char *path;
    enum http_method method;
    route_fn fn;
} route;

static void health_v2(routes *rt, http_request *req)
{
    ingest_health_v2(rt->ingest, req);
}

/* GET /api/health: is Redis reachable from this producer. */
static void api_health(routes *rt, http_request *req)
{
    char body[128];
    int up = rlink_ready(rt->link);
    int n = snprintf(body, sizeof(body), "{\"status\":\"%s\",\"redis\":%s}",
                     up ? "healthy" : "degraded", up ? "true" : "false");

    http_respond(req, up ? 200 : 503, NULL, body, (size_t)n);
}

static const route table[] = {
    {"/upload_health_data_v2", HTTP_POST, health_v2},
    {"/api/health", HTTP_GET, api_health},
};

void route_request(http_request *req, void *arg)
{
    size_t i;
    const route *path_match = NULL;

    for (i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        if (strcmp(table[i].path, req->path) != 0)
            continue;
        if (table[i].method == req->method) {
            table[i].fn(arg, req);
            return;
        }
        path_match = &table[i];
    }
    if (path_match) {
        static const char not_allowed[] = "{\"status\":\"error\",\"message\":\"method not allowed\"}";
        char allow[64];

        snprintf(allow, sizeof(allow), "Allow: %s\r\n", http_method_str(path_match->method));
        http_respond(req, 405, allow, not_allowed, sizeof(not_allowed) - 1);
        return;
    }
    http_respond_error(req, 404, "no such endpoint");
}
