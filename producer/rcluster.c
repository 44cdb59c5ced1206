#include "rcluster.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "err.h"
#include "log.h"

#define NODES_MAX (CLUSTER_NODES_MAX + 8)  /* masters now and recently, seeds */
#define TICK_MS 50
#define REFRESH_MIN_MS 200      /* between two CLUSTER SLOTS while one is wanted */
#define REFRESH_PERIOD_MS 5000  /* a map is re-learnt this often all the same */
#define REDIRECTS_MAX 5
#define ASKED_KEEP_MS 10000     /* a link an ASK named is kept this long */

/* A node we hold a link to, by address (map indices change on refresh). */
typedef struct node {
    cluster_addr addr;
    rlink *link;            /* NULL: free entry */
    uint64_t asked_ms;      /* last ASK to it (uv_now); 0: never */
} node;

struct rcluster {
    uv_loop_t *loop;
    const lj_config *cfg;
    rlink *single;          /* one Redis; NULL on a cluster */
    uv_timer_t tick;
    cluster_addr seeds[CLUSTER_NODES_MAX];
    int nseeds;
    node nodes[NODES_MAX];
    cluster_map *map;       /* the slot map in use */
    cluster_map *scratch;   /* a map being read from a CLUSTER SLOTS reply */
    int have_map;
    int want_refresh;
    int refreshing;         /* a CLUSTER SLOTS in flight */
    cluster_addr refresh_from;
    uint64_t last_refresh_ms;
    unsigned rotate;        /* which ready link is asked next */
    int closing;
    const struct op *replying;  /* the command whose callback is running */
    rcluster_counts counts;
};

/* A command on a cluster, with its own copy of the arguments. */
typedef struct op {
    rcluster *c;
    rlink_cb cb;
    void *arg;
    int redirects;
    cluster_addr at;        /* the node it was last sent to */
    int argc;
    const char **argv;
    size_t *lens;
} op;

static void on_routed(redisReply *r, void *arg);

/* ------------------------------------------------------------------------
 * Nodes
 * ------------------------------------------------------------------------ */

static int same_addr(const cluster_addr *a, const cluster_addr *b)
{
    return a->port == b->port && strcmp(a->host, b->host) == 0;
}

/* The index of the node at 'a', or -1. */
static int find_node(const rcluster *c, const cluster_addr *a)
{
    int i;

    for (i = 0; i < NODES_MAX; i++)
        if (c->nodes[i].link && same_addr(&c->nodes[i].addr, a))
            return i;
    return -1;
}

/* 1 when the node at 'a' has a link that is up. */
static int node_up(const rcluster *c, const cluster_addr *a)
{
    int i = find_node(c, a);

    return i >= 0 && rlink_ready(c->nodes[i].link);
}

/* The node at 'a', its link started when it is new; NULL when the table is
 * full or out of memory. */
static node *node_for(rcluster *c, const cluster_addr *a)
{
    node *n;
    int i = find_node(c, a);

    if (i >= 0)
        return &c->nodes[i];
    for (i = 0; i < NODES_MAX && c->nodes[i].link; i++)
        ;
    if (i == NODES_MAX)
        return NULL;
    n = &c->nodes[i];
    n->link = rlink_new(c->loop, a->host, a->port, c->cfg->redis_password,
                        (unsigned)c->cfg->redis_timeout_ms, (unsigned)c->cfg->redis_connect_ms);
    if (n->link == NULL)
        return NULL;
    n->addr = *a;
    n->asked_ms = 0;
    return n;
}

static int is_master(const rcluster *c, const cluster_addr *a)
{
    int i;

    for (i = 0; c->have_map && i < c->map->nnodes; i++)
        if (same_addr(&c->map->nodes[i], a))
            return 1;
    return 0;
}

/* 1 when every master of the map has a link that is up. */
static int masters_up(const rcluster *c)
{
    int i;

    for (i = 0; i < c->map->nnodes; i++)
        if (!node_up(c, &c->map->nodes[i]))
            return 0;
    return c->map->nnodes > 0;
}

/* Links to nodes that are no masters any more (a failed master, a replica
 * seed) are closed: their commands would only be redirected. Kept: a link
 * with replies still to come, and one an ASK named lately (a slot
 * migrating to a master that owns no slot yet is not in the map). */
static void prune(rcluster *c)
{
    uint64_t now = uv_now(c->loop);
    int i;

    for (i = 0; i < NODES_MAX; i++) {
        node *n = &c->nodes[i];

        if (n->link == NULL || is_master(c, &n->addr) ||
            (c->refreshing && same_addr(&n->addr, &c->refresh_from)) ||
            !rlink_idle(n->link) || (n->asked_ms && now - n->asked_ms < ASKED_KEEP_MS))
            continue;
        log_info("rcluster", "%s:%d is no master: link closed", n->addr.host, n->addr.port);
        rlink_close(n->link);
        n->link = NULL;
    }
}

/* ------------------------------------------------------------------------
 * The slot map
 * ------------------------------------------------------------------------ */

static void learn_map(rcluster *c)
{
    unsigned gaps = cluster_map_uncovered(c->scratch);
    int i;

    memcpy(c->map, c->scratch, sizeof(*c->map));
    c->have_map = 1;
    c->want_refresh = 0;
    c->counts.refreshes++;
    for (i = 0; i < c->map->nnodes; i++)
        if (node_for(c, &c->map->nodes[i]) == NULL)
            log_warn("rcluster", "no link to master %s:%d", c->map->nodes[i].host,
                     c->map->nodes[i].port);
    if (gaps)
        log_warn("rcluster", "%u slots have no master", gaps);
    log_debug("rcluster", "slot map from %s:%d: %d masters", c->refresh_from.host,
              c->refresh_from.port, c->map->nnodes);
}

static void on_slots(redisReply *r, void *arg)
{
    rcluster *c = arg;

    c->refreshing = 0;
    if (c->closing)
        return;
    if (r == NULL || r->type != REDIS_REPLY_ARRAY ||
        cluster_map_from_slots(c->scratch, r, &c->refresh_from) != 0) {
        log_warn("rcluster", "no slot map from %s:%d: %s", c->refresh_from.host,
                 c->refresh_from.port,
                 r == NULL ? "link lost" : r->type == REDIS_REPLY_ERROR ? r->str : "bad reply");
        return;     /* still wanted: the next tick asks another node */
    }
    learn_map(c);
}

/* Sends CLUSTER SLOTS through the next link that is up; with none up,
 * links to the seeds are started (the next tick finds them). */
static void send_refresh(rcluster *c)
{
    static const char *const argv[] = {"CLUSTER", "SLOTS"};
    static const size_t lens[] = {7, 5};
    int i;

    for (i = 0; i < NODES_MAX; i++) {
        node *n = &c->nodes[(c->rotate + (unsigned)i) % NODES_MAX];

        if (n->link == NULL || !rlink_ready(n->link))
            continue;
        c->rotate += (unsigned)i + 1;
        c->refresh_from = n->addr;
        if (rlink_command(n->link, 2, (const char **)argv, lens, on_slots, c) == 0) {
            c->refreshing = 1;
            c->last_refresh_ms = uv_now(c->loop);
        }
        return;
    }
    for (i = 0; i < c->nseeds; i++)
        node_for(c, &c->seeds[i]);
}

static void on_tick(uv_timer_t *t)
{
    rcluster *c = t->data;
    uint64_t now = uv_now(c->loop);

    if (c->have_map && !masters_up(c))
        c->want_refresh = 1;
    if (c->refreshing)
        return;
    if (!c->have_map || c->want_refresh) {
        if (now - c->last_refresh_ms >= REFRESH_MIN_MS)
            send_refresh(c);
        return;
    }
    prune(c);
    if (now - c->last_refresh_ms >= REFRESH_PERIOD_MS)
        send_refresh(c);
}

/* ------------------------------------------------------------------------
 * Commands
 * ------------------------------------------------------------------------ */

static op *op_new(rcluster *c, int argc, const char **argv, const size_t *lens, rlink_cb cb,
                  void *arg)
{
    size_t bytes = sizeof(op) + (size_t)argc * (sizeof(char *) + sizeof(size_t));
    char *data;
    op *o;
    int i;

    for (i = 0; i < argc; i++)
        bytes += lens[i] + 1;
    if ((o = malloc(bytes)) == NULL)
        return NULL;
    o->c = c;
    o->cb = cb;
    o->arg = arg;
    o->redirects = 0;
    o->argc = argc;
    o->lens = (size_t *)(o + 1);
    o->argv = (const char **)(o->lens + argc);
    data = (char *)(o->argv + argc);
    for (i = 0; i < argc; i++) {
        memcpy(data, argv[i], lens[i]);
        data[lens[i]] = '\0';
        o->argv[i] = data;
        o->lens[i] = lens[i];
        data += lens[i] + 1;
    }
    return o;
}

static void finish(op *o, redisReply *r)
{
    if (o->cb) {
        const op *outer = o->c->replying;

        o->c->replying = o;
        o->cb(r, o->arg);
        o->c->replying = outer;
    }
    free(o);
}

/* Sends 'o' to the node at 'to' (after ASKING when 'asking'). 0 when sent;
 * else the map is refreshed and LJ_EUNAVAIL or LJ_ENOMEM returned. */
static int send_to(rcluster *c, op *o, const cluster_addr *to, int asking)
{
    static const char *const ask[] = {"ASKING"};
    static const size_t ask_len[] = {6};
    node *n = node_for(c, to);
    int rc;

    if (n == NULL || !rlink_ready(n->link)) {
        c->want_refresh = 1;
        return n == NULL ? LJ_ENOMEM : LJ_EUNAVAIL;
    }
    if (asking && rlink_command(n->link, 1, (const char **)ask, ask_len, NULL, NULL) != 0)
        return LJ_EUNAVAIL;
    if ((rc = rlink_command(n->link, o->argc, o->argv, o->lens, on_routed, o)) != 0)
        c->want_refresh = 1;
    else
        o->at = *to;
    return rc;
}

/* The master for 'key' (any master whose link is up for NULL), or NULL. */
static const cluster_addr *master_of(const rcluster *c, const char *key)
{
    int idx;
    int i;

    if (!c->have_map)
        return NULL;
    if (key) {
        idx = c->map->slot_node[cluster_key_slot(key, strlen(key))];
        return idx < 0 ? NULL : &c->map->nodes[idx];
    }
    for (i = 0; i < c->map->nnodes; i++)
        if (node_up(c, &c->map->nodes[i]))
            return &c->map->nodes[i];
    return NULL;
}

/* A MOVED or ASK: resends 'o' there. 0 when resent. */
static int redirect(rcluster *c, op *o, const cluster_redirect *rd)
{
    int idx;

    if (++o->redirects > REDIRECTS_MAX) {
        log_warn("rcluster", "gave up after %d redirects", REDIRECTS_MAX);
        return -1;
    }
    log_debug("rcluster", "%s slot %u -> %s:%d", rd->kind == CLUSTER_MOVED ? "MOVED" : "ASK",
              rd->slot, rd->to.host, rd->to.port);
    if (rd->kind == CLUSTER_MOVED) {
        c->counts.moved++;
        c->want_refresh = 1;
        if ((idx = cluster_map_node(c->map, &rd->to)) >= 0)
            c->map->slot_node[rd->slot] = (int16_t)idx;
    } else {
        node *n = node_for(c, &rd->to);

        c->counts.ask++;
        if (n)
            n->asked_ms = uv_now(c->loop);
    }
    return send_to(c, o, &rd->to, rd->kind == CLUSTER_ASK);
}

static void on_routed(redisReply *r, void *arg)
{
    op *o = arg;
    rcluster *c = o->c;
    cluster_redirect rd;

    if (c->closing) {
        finish(o, NULL);
        return;
    }
    if (r == NULL) {
        c->want_refresh = 1;    /* never resent: it may have run */
        finish(o, NULL);
        return;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        switch (cluster_redirect_parse(r->str, r->len, &rd)) {
        case CLUSTER_MOVED:
        case CLUSTER_ASK:
            if (redirect(c, o, &rd) != 0)
                finish(o, NULL);
            return;
        case CLUSTER_RETRY:
            c->want_refresh = 1;
            break;
        case CLUSTER_NO_REDIRECT:
            break;
        }
    }
    finish(o, r);
}

int rcluster_command(rcluster *c, const char *key, int argc, const char **argv,
                     const size_t *lens, rlink_cb cb, void *arg)
{
    const cluster_addr *to;
    op *o;
    int rc;

    if (c->single)
        return rlink_command(c->single, argc, argv, lens, cb, arg);
    if (c->closing)
        return LJ_EUNAVAIL;
    if ((to = master_of(c, key)) == NULL) {
        c->want_refresh = 1;
        return LJ_EUNAVAIL;
    }
    if ((o = op_new(c, argc, argv, lens, cb, arg)) == NULL)
        return LJ_ENOMEM;
    if ((rc = send_to(c, o, to, 0)) != 0)
        free(o);
    return rc;
}

int rcluster_command_same_node(rcluster *c, int argc, const char **argv, const size_t *lens,
                               rlink_cb cb, void *arg)
{
    op *o;
    int rc;

    if (c->single)
        return rlink_command(c->single, argc, argv, lens, cb, arg);
    if (c->closing || c->replying == NULL)
        return LJ_EUNAVAIL;
    if ((o = op_new(c, argc, argv, lens, cb, arg)) == NULL)
        return LJ_ENOMEM;
    if ((rc = send_to(c, o, &c->replying->at, 0)) != 0)
        free(o);
    return rc;
}

/* ------------------------------------------------------------------------
 * Life
 * ------------------------------------------------------------------------ */

static int open_cluster(rcluster *c)
{
    int i;

    c->nseeds = cluster_seeds_parse(c->cfg->redis_cluster, c->seeds, CLUSTER_NODES_MAX);
    if (c->nseeds < 1) {
        log_error("rcluster", "--redis-cluster: cannot parse the seed list");
        return -1;
    }
    c->map = calloc(1, sizeof(*c->map));
    c->scratch = calloc(1, sizeof(*c->scratch));
    if (c->map == NULL || c->scratch == NULL)
        return -1;
    for (i = 0; i < c->nseeds; i++)
        if (node_for(c, &c->seeds[i]) == NULL)
            return -1;
    uv_timer_start(&c->tick, on_tick, TICK_MS, TICK_MS);
    return 0;
}

static void on_closed(uv_handle_t *h)
{
    rcluster *c = h->data;

    free(c->map);
    free(c->scratch);
    free(c);
}

rcluster *rcluster_new(uv_loop_t *loop, const lj_config *cfg)
{
    rcluster *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return NULL;
    c->loop = loop;
    c->cfg = cfg;
    uv_timer_init(loop, &c->tick);
    c->tick.data = c;
    if (cfg->redis_cluster[0] == '\0') {
        c->single = rlink_new(loop, cfg->redis_host, cfg->redis_port, cfg->redis_password,
                              (unsigned)cfg->redis_timeout_ms, (unsigned)cfg->redis_connect_ms);
        if (c->single != NULL)
            return c;
    } else if (open_cluster(c) == 0) {
        return c;
    }
    rcluster_close(c);
    return NULL;
}

int rcluster_is_cluster(const rcluster *c)
{
    return c->single == NULL;
}

int rcluster_ready(const rcluster *c)
{
    if (c->single)
        return rlink_ready(c->single);
    return c->have_map && cluster_map_uncovered(c->map) == 0 && masters_up(c);
}

_Static_assert(RCLUSTER_NAME_MAX >= CLUSTER_HOST_MAX + 7, "host, ':' and a port");

int rcluster_master_name(const rcluster *c, const char *key, char *out, size_t len)
{
    const cluster_addr *m = c->single ? NULL : master_of(c, key);

    if (m == NULL)
        return LJ_EUNAVAIL;
    snprintf(out, len, "%s:%d", m->host, m->port);
    return 0;
}

int rcluster_idle(const rcluster *c)
{
    int i;

    if (c->single)
        return rlink_idle(c->single);
    for (i = 0; i < NODES_MAX; i++)
        if (c->nodes[i].link && !rlink_idle(c->nodes[i].link))
            return 0;
    return 1;
}

void rcluster_get_counts(const rcluster *c, rcluster_counts *out)
{
    *out = c->counts;
}

void rcluster_close(rcluster *c)
{
    int i;

    c->closing = 1;
    if (c->single)
        rlink_close(c->single);
    for (i = 0; i < NODES_MAX; i++)
        if (c->nodes[i].link) {
            rlink_close(c->nodes[i].link);
            c->nodes[i].link = NULL;
        }
    uv_close((uv_handle_t *)&c->tick, on_closed);
}
