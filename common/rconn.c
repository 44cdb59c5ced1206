#include "rconn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster.h"
#include "log.h"
#include "rds.h"

#define RCONN_SEEDS_MAX 16
#define RCONN_TURNS 8           /* sends of one command, redirects included */
#define RCONN_PAUSE_MS 20       /* times the turn: 20, 40, ... ms */

typedef struct rlink {
    cluster_addr addr;
    redisContext *ctx;          /* NULL: not connected */
} rlink;

struct rconn {
    int cluster;
    char *host;
    int port;
    char *password;
    int connect_ms;
    int timeout_ms;
    redisContext *one;          /* one server */
    cluster_addr seeds[RCONN_SEEDS_MAX];
    int nseeds;
    cluster_map map;
    int stale;                  /* re-learn the map before the next send */
    rlink links[CLUSTER_NODES_MAX];
    int nlinks;
    rconn_counts counts;
    int broken;                 /* the last command got no reply */
    char err[256];
};

static void pause_turn(int turn)
{
    long ms = (long)RCONN_PAUSE_MS * turn;

    nanosleep(&(struct timespec){ms / 1000, (ms % 1000) * 1000000L}, NULL);
}

static redisContext *connect_to(rconn *c, const char *host, int port)
{
    char why[128];
    redisContext *ctx =
        rds_connect(host, port, c->password, c->connect_ms, c->timeout_ms, why, sizeof(why));

    if (ctx == NULL)
        snprintf(c->err, sizeof(c->err), "%.63s:%d: %.100s", host, port, why);
    return ctx;
}

static rlink *link_find(rconn *c, const cluster_addr *a)
{
    int i;

    for (i = 0; i < c->nlinks; i++)
        if (c->links[i].addr.port == a->port && strcmp(c->links[i].addr.host, a->host) == 0)
            return &c->links[i];
    if (c->nlinks == CLUSTER_NODES_MAX)
        return NULL;
    c->links[c->nlinks] = (rlink){*a, NULL};
    return &c->links[c->nlinks++];
}

/* The connected context of 'a', or NULL (c->err says why). */
static redisContext *link_get(rconn *c, const cluster_addr *a)
{
    rlink *l = link_find(c, a);

    if (l == NULL) {
        snprintf(c->err, sizeof(c->err), "too many cluster nodes");
        return NULL;
    }
    if (l->ctx == NULL)
        l->ctx = connect_to(c, a->host, a->port);
    return l->ctx;
}

static void link_drop(rconn *c, const cluster_addr *a)
{
    rlink *l = link_find(c, a);

    if (l && l->ctx) {
        redisFree(l->ctx);
        l->ctx = NULL;
    }
}

/* Closes the links to nodes that are no longer masters, so the table of
 * links stays bounded by the masters of the cluster. */
static void links_prune(rconn *c)
{
    int i, j, n = 0;

    for (i = 0; i < c->nlinks; i++) {
        int master = 0;

        for (j = 0; j < c->map.nnodes && !master; j++)
            master = c->map.nodes[j].port == c->links[i].addr.port &&
                     strcmp(c->map.nodes[j].host, c->links[i].addr.host) == 0;
        if (master)
            c->links[n++] = c->links[i];
        else if (c->links[i].ctx)
            redisFree(c->links[i].ctx);
    }
    c->nlinks = n;
}

/* Asks node 'a' for the slot map. 0 when 'c'->map now holds it. */
static int learn_from(rconn *c, const cluster_addr *a)
{
    static const char *argv[] = {"CLUSTER", "SLOTS"};
    redisContext *ctx = link_get(c, a);
    redisReply *r;
    int rc;

    if (ctx == NULL)
        return -1;
    r = rds_command(ctx, 2, argv);
    if (r == NULL) {
        snprintf(c->err, sizeof(c->err), "%s:%d: %.100s", a->host, a->port, ctx->errstr);
        link_drop(c, a);
        return -1;
    }
    rc = cluster_map_from_slots(&c->map, r, a);
    if (rc != 0 || c->map.nnodes == 0) {
        snprintf(c->err, sizeof(c->err), "%s:%d: no usable CLUSTER SLOTS reply", a->host,
                 a->port);
        rc = -1;
    }
    freeReplyObject(r);
    return rc;
}

/* Re-learns the map from the masters known, then the seeds. 0 or -1. */
static int learn(rconn *c)
{
    cluster_addr known[CLUSTER_NODES_MAX];
    int i, n = c->map.nnodes;

    c->counts.refreshes++;
    memcpy(known, c->map.nodes, (size_t)n * sizeof(known[0]));
    for (i = 0; i < n + c->nseeds; i++) {
        if (learn_from(c, i < n ? &known[i] : &c->seeds[i - n]) == 0) {
            c->stale = 0;
            links_prune(c);
            return 0;
        }
    }
    c->map.nnodes = 0;      /* nothing known: the next call starts from the seeds */
    c->stale = 1;
    log_warn("rconn", "cannot learn the cluster's slot map: %s", c->err);
    return -1;
}

static int copy_opts(rconn *c, const rconn_opts *o)
{
    c->host = strdup(o->host ? o->host : "");
    c->password = strdup(o->password ? o->password : "");
    c->port = o->port;
    c->connect_ms = o->connect_ms;
    c->timeout_ms = o->timeout_ms;
    return c->host && c->password ? 0 : -1;
}

rconn *rconn_open(const rconn_opts *o, char *err, size_t errlen)
{
    rconn *c = calloc(1, sizeof(*c));

    if (c == NULL || copy_opts(c, o) != 0) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (o->seeds && *o->seeds) {
        c->cluster = 1;
        c->nseeds = cluster_seeds_parse(o->seeds, c->seeds, RCONN_SEEDS_MAX);
        if (c->nseeds < 0) {
            snprintf(err, errlen, "cluster seeds: expected host:port[,host:port...] (at most %d)",
                     RCONN_SEEDS_MAX);
            goto fail;
        }
        if (learn(c) != 0) {
            snprintf(err, errlen, "%s", c->err);
            goto fail;
        }
    } else if ((c->one = connect_to(c, c->host, c->port)) == NULL) {
        snprintf(err, errlen, "%s", c->err);
        goto fail;
    }
    return c;
fail:
    rconn_close(c);
    return NULL;
}

void rconn_close(rconn *c)
{
    int i;

    if (c == NULL)
        return;
    if (c->one)
        redisFree(c->one);
    for (i = 0; i < c->nlinks; i++)
        if (c->links[i].ctx)
            redisFree(c->links[i].ctx);
    free(c->host);
    free(c->password);
    free(c);
}

static redisReply *one_command(rconn *c, int argc, const char **argv)
{
    redisReply *r;

    if (c->one == NULL && (c->one = connect_to(c, c->host, c->port)) == NULL)
        return NULL;
    r = rds_command(c->one, argc, argv);
    if (r == NULL) {
        snprintf(c->err, sizeof(c->err), "%s", c->one->errstr);
        redisFree(c->one);
        c->one = NULL;
    }
    return r;
}

/* "ASKING" then the command, on 'ctx'; the command's reply or NULL. */
static redisReply *asking_command(redisContext *ctx, int argc, const char **argv)
{
    void *ask = NULL, *r = NULL;

    if (redisAppendCommand(ctx, "ASKING") != REDIS_OK ||
        redisAppendCommandArgv(ctx, argc, argv, NULL) != REDIS_OK ||
        redisGetReply(ctx, &ask) != REDIS_OK || redisGetReply(ctx, &r) != REDIS_OK) {
        if (ask)
            freeReplyObject(ask);
        return NULL;
    }
    freeReplyObject(ask);
    return r;
}

/* The master of 'slot' (or any, for -1), or NULL when the map has none. */
static const cluster_addr *master_of(const rconn *c, int slot)
{
    int node = slot < 0 ? 0 : c->map.slot_node[slot];

    /* After a failed re-learn the map is empty and slot_node is not read. */
    return node < 0 || node >= c->map.nnodes ? NULL : &c->map.nodes[node];
}

/* Follows what error reply 'r' asks for: 1 when the command is to be sent
 * again (to '*ask' once, when '*asking' is set), 0 when 'r' is the answer. */
static int follow(rconn *c, int slot, redisReply *r, cluster_addr *ask, int *asking, int turn)
{
    cluster_redirect d;
    int node;

    switch (cluster_redirect_parse(r->str, r->len, &d)) {
    case CLUSTER_MOVED:
        c->counts.moved++;
        node = cluster_map_node(&c->map, &d.to);
        if (node >= 0 && slot >= 0)
            c->map.slot_node[slot] = (int16_t)node;
        c->stale = 1;       /* re-learnt at the next call, not per redirect */
        return node >= 0;
    case CLUSTER_ASK:
        c->counts.ask++;
        *ask = d.to;
        *asking = 1;
        return 1;
    case CLUSTER_RETRY:
        c->counts.retries++;
        pause_turn(turn);
        return 1;
    default:
        return 0;
    }
}

static redisReply *cluster_command(rconn *c, const char *key, int argc, const char **argv)
{
    int slot = key ? (int)cluster_key_slot(key, strlen(key)) : -1;
    cluster_addr ask, to;
    int turn, asking = 0;

    if (c->stale)
        learn(c);
    for (turn = 1; turn <= RCONN_TURNS; turn++) {
        const cluster_addr *m = asking ? &ask : master_of(c, slot);
        redisContext *ctx = NULL;
        redisReply *r;

        if (m)
            to = *m;
        if (m == NULL || (ctx = link_get(c, &to)) == NULL) {
            /* Not written: nobody serves the slot, or its master is gone. */
            if (m == NULL)
                snprintf(c->err, sizeof(c->err), "no master serves slot %d", slot);
            pause_turn(turn);
            learn(c);
            asking = 0;
            continue;
        }
        r = asking ? asking_command(ctx, argc, argv) : rds_command(ctx, argc, argv);
        asking = 0;
        if (r == NULL) {
            snprintf(c->err, sizeof(c->err), "%s:%d: %.100s", to.host, to.port, ctx->errstr);
            link_drop(c, &to);
            c->stale = 1;
            return NULL;
        }
        if (r->type != REDIS_REPLY_ERROR || !follow(c, slot, r, &ask, &asking, turn))
            return r;
        freeReplyObject(r);
    }
    snprintf(c->err, sizeof(c->err), "slot %d: still redirected after %d sends", slot,
             RCONN_TURNS);
    return NULL;
}

redisReply *rconn_command(rconn *c, const char *key, int argc, const char **argv)
{
    redisReply *r = c->cluster ? cluster_command(c, key, argc, argv) : one_command(c, argc, argv);

    c->broken = r == NULL;
    return r;
}

int rconn_broken(const rconn *c)
{
    return c->broken;
}

const char *rconn_errstr(const rconn *c)
{
    return c->err;
}

int rconn_is_cluster(const rconn *c)
{
    return c->cluster;
}

void rconn_get_counts(const rconn *c, rconn_counts *out)
{
    *out = c->counts;
}
