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
    rcluster *link;
    const lj_config *cfg;
    char key[STREAM_NAME_MAX];
    char legacy_key[STREAM_NAME_MAX];
    int ratio;
    int retired;        /* the legacy path is retired (STREAM_LEGACY_RETIRED) */
    int refreshing;     /* replies to come of a refresh: they still need 'g' */
    int closing;
    int closed;         /* the timer handle is closed */
};

typedef struct set_op {
    gray *g;
    int ratio;
    gray_set_cb cb;
    void *arg;
} set_op;

typedef struct legacy_op {
    gray *g;
    int retired;
    gray_legacy_cb cb;
    void *arg;
} legacy_op;

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

static void apply_ratio(gray *g, const redisReply *r)
{
    int v;

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

/* 1 when a stored legacy switch says retired: anything but that value
 * (absent, "on", garbage) leaves the legacy path serving. */
static int is_retired(const redisReply *r)
{
    return r->type == REDIS_REPLY_STRING && strcmp(r->str, STREAM_LEGACY_RETIRED) == 0;
}

static void apply_legacy(gray *g, const redisReply *r)
{
    int retired = is_retired(r);

    if (retired != g->retired)
        log_info("gray", "legacy path now %s", retired ? "retired" : "on");
    g->retired = retired;
}

/* Counts a refresh reply in; 1 when there is nothing to read from it ('g'
 * freed when it was closed and this was the last reply). */
static int refresh_reply(gray *g, const redisReply *r)
{
    if (--g->refreshing == 0 && g->closed) {
        free(g);
        return 1;
    }
    return g->closed || g->closing || r == NULL;
}

static void on_get(redisReply *r, void *arg)
{
    gray *g = arg;

    if (refresh_reply(g, r))
        return;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
        log_warn("gray", "ignoring unexpected reply to MGET %s %s", g->key, g->legacy_key);
        return;
    }
    apply_ratio(g, r->element[0]);
    apply_legacy(g, r->element[1]);
}

/* On a cluster the two keys live in two slots: one GET each. */
static void on_get_ratio(redisReply *r, void *arg)
{
    gray *g = arg;

    if (!refresh_reply(g, r) && r->type != REDIS_REPLY_ERROR)
        apply_ratio(g, r);
}

static void on_get_legacy(redisReply *r, void *arg)
{
    gray *g = arg;

    if (!refresh_reply(g, r) && r->type != REDIS_REPLY_ERROR)
        apply_legacy(g, r);
}

static void get_key(gray *g, const char *key, rlink_cb cb)
{
    const char *argv[] = {"GET", key};
    size_t lens[] = {3, strlen(key)};

    if (rcluster_command(g->link, key, 2, argv, lens, cb, g) == 0)
        g->refreshing++;
}

static void refresh(uv_timer_t *t)
{
    gray *g = t->data;
    const char *argv[] = {"MGET", g->key, g->legacy_key};
    size_t lens[] = {4, strlen(g->key), strlen(g->legacy_key)};

    if (g->refreshing)
        return;
    if (rcluster_is_cluster(g->link)) {
        get_key(g, g->key, on_get_ratio);
        get_key(g, g->legacy_key, on_get_legacy);
    } else if (rcluster_command(g->link, g->key, 3, argv, lens, on_get, g) == 0) {
        g->refreshing = 1;
    }
}

gray *gray_new(uv_loop_t *loop, rcluster *link, const lj_config *cfg)
{
    gray *g = calloc(1, sizeof(*g));

    if (g == NULL)
        return NULL;
    g->link = link;
    g->cfg = cfg;
    g->ratio = cfg->initial_ratio_permille * (GRAY_SCALE / 1000);
    stream_ratio_key(g->key, sizeof(g->key), cfg->stream_prefix);
    stream_legacy_key(g->legacy_key, sizeof(g->legacy_key), cfg->stream_prefix);
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
        free(g);    /* else the last refresh reply (or NULL) frees it */
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

int gray_legacy_retired(const gray *g)
{
    return g->retired;
}

int gray_takes_stream(const gray *g, const char *device_sn)
{
    if (g->retired)
        return 1;
    return (int)(stream_hash(device_sn, strlen(device_sn)) % GRAY_SCALE) < g->ratio;
}

/* SET 'key' 'value' GET: 'cb' gets the old value. 0, or LJ_EUNAVAIL. */
static int set_get(gray *g, const char *key, const char *value, rlink_cb cb, void *op)
{
    const char *argv[] = {"SET", key, value, "GET"};
    size_t lens[4];
    int i;

    for (i = 0; i < 4; i++)
        lens[i] = strlen(argv[i]);
    return rcluster_command(g->link, key, 4, argv, lens, cb, op) != 0 ? LJ_EUNAVAIL : 0;
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
    set_op *op = malloc(sizeof(*op));

    if (op == NULL)
        return LJ_ENOMEM;
    gray_format(ratio, value, sizeof(value));
    op->g = g;
    op->ratio = ratio;
    op->cb = cb;
    op->arg = arg;
    if (set_get(g, g->key, value, on_set, op) != 0) {
        free(op);
        return LJ_EUNAVAIL;
    }
    return 0;
}

static void on_set_legacy(redisReply *r, void *arg)
{
    legacy_op *op = arg;

    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        op->cb(0, 0, op->arg);
        free(op);
        return;
    }
    op->g->retired = op->retired;
    op->cb(1, is_retired(r), op->arg);
    free(op);
}

int gray_set_legacy(gray *g, int retired, gray_legacy_cb cb, void *arg)
{
    legacy_op *op = malloc(sizeof(*op));

    if (op == NULL)
        return LJ_ENOMEM;
    op->g = g;
    op->retired = retired;
    op->cb = cb;
    op->arg = arg;
    if (set_get(g, g->legacy_key, retired ? STREAM_LEGACY_RETIRED : STREAM_LEGACY_ON,
                on_set_legacy, op) != 0) {
        free(op);
        return LJ_EUNAVAIL;
    }
    return 0;
}
