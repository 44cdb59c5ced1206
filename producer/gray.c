#include "gray.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "log.h"
#include "streams.h"

struct gray {
    uv_timer_t timer;
    rlink *link;
    const lj_config *cfg;
    char key[STREAM_NAME_MAX];
    int ratio;
    int refreshing;     /* a GET is in flight: on_get() still needs 'g' */
    int closing;
    int closed;         /* the timer handle is closed */
};

typedef struct set_op {
    gray *g;
    int ratio;
    gray_set_cb cb;
    void *arg;
} set_op;

void gray_format(int ratio, char *out, size_t len)
{
    snprintf(out, len, "%.4g", (double)ratio / GRAY_SCALE);
}

/* Reads a stored ratio ("0.3"); -1 when it is not a number in 0..1. */
static int parse_ratio(const char *s)
{
    char *end;
    double v = strtod(s, &end);

    if (end == s || *end != '\0' || !(v >= 0.0 && v <= 1.0))
        return -1;
    return (int)lround(v * GRAY_SCALE);
}

static void on_get(redisReply *r, void *arg)
{
    gray *g = arg;
    int v;

    g->refreshing = 0;
    if (g->closed) {
        free(g);
        return;
    }
    if (g->closing || r == NULL)
        return;
    if (r->type == REDIS_REPLY_NIL) {
        g->ratio = g->cfg->initial_ratio_permille * (GRAY_SCALE / 1000);
    } else if (r->type == REDIS_REPLY_STRING && (v = parse_ratio(r->str)) >= 0) {
        if (v != g->ratio)
            log_info("gray", "traffic ratio now %.4f", (double)v / GRAY_SCALE);
        g->ratio = v;
    } else {
        log_warn("gray", "ignoring unreadable ratio in %s", g->key);
    }
}

static void refresh(uv_timer_t *t)
{
    gray *g = t->data;
    const char *argv[] = {"GET", g->key};
    size_t lens[] = {3, strlen(g->key)};

    if (g->refreshing)
        return;
    if (rlink_command(g->link, 2, argv, lens, on_get, g) == 0)
        g->refreshing = 1;
}

gray *gray_new(uv_loop_t *loop, rlink *link, const lj_config *cfg)
{
    gray *g = calloc(1, sizeof(*g));

    if (g == NULL)
        return NULL;
    g->link = link;
    g->cfg = cfg;
    g->ratio = cfg->initial_ratio_permille * (GRAY_SCALE / 1000);
    snprintf(g->key, sizeof(g->key), "%sstream_traffic_ratio", cfg->stream_prefix);
    uv_timer_init(loop, &g->timer);
    g->timer.data = g;
    uv_timer_start(&g->timer, refresh, 0, (uint64_t)cfg->ratio_refresh_ms);
    return g;
}

static void on_closed(uv_handle_t *h)
{
    gray *g = h->data;

    g->closed = 1;
    if (!g->refreshing)
        free(g);    /* else on_get() frees it when its reply (or NULL) comes */
}

void gray_close(gray *g)
{
    g->closing = 1;
    uv_close((uv_handle_t *)&g->timer, on_closed);
}

int gray_ratio(const gray *g)
{
    return g->ratio;
}

int gray_takes_stream(const gray *g, const char *device_sn)
{
    return (int)(stream_hash(device_sn, strlen(device_sn)) % GRAY_SCALE) < g->ratio;
}

static void on_set(redisReply *r, void *arg)
{
    set_op *op = arg;
    int old = op->g->cfg->initial_ratio_permille * (GRAY_SCALE / 1000);

    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        op->cb(0, 0, op->arg);
        free(op);
        return;
    }
    if (r->type == REDIS_REPLY_STRING && parse_ratio(r->str) >= 0)
        old = parse_ratio(r->str);
    op->g->ratio = op->ratio;
    op->cb(1, old, op->arg);
    free(op);
}

int gray_set(gray *g, int ratio, gray_set_cb cb, void *arg)
{
    char value[16];
    const char *argv[] = {"SET", g->key, value, "GET"};
    size_t lens[4];
    set_op *op = malloc(sizeof(*op));
    int i;

    if (op == NULL)
        return LJ_ENOMEM;
    gray_format(ratio, value, sizeof(value));
    for (i = 0; i < 4; i++)
        lens[i] = strlen(argv[i]);
    op->g = g;
    op->ratio = ratio;
    op->cb = cb;
    op->arg = arg;
    if (rlink_command(g->link, 4, argv, lens, on_set, op) != 0) {
        free(op);
        return LJ_EUNAVAIL;
    }
    return 0;
}
