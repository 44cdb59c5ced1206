#include "rlink.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/async.h>

#include "err.h"
#include "log.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

typedef struct pending pending;

/* A connect attempt:
 *
 *   link_connect --name--> uv_getaddrinfo (thread pool) --> on_resolved --+
 *        |                                                                |
 *        +--numeric address------------------------------> connect_addr <-+
 *                                                              |
 *            redisAsyncConnect(numeric: no lookup), 'deadline' started
 *                                                              |
 *          on_connect (stops 'deadline')  or  on_deadline (frees the context)
 *
 * Every failure ends in retry_later(), which arms 'retry' with the backoff. */
struct rlink {
    uv_loop_t *loop;
    uv_timer_t retry;
    uv_timer_t watch;       /* checks that Redis answers in time */
    uv_timer_t deadline;    /* the connect in progress must complete by then */
    uv_getaddrinfo_t gai;
    int resolving;          /* 'gai' in flight: 'l' must outlive its callback */
    unsigned timeout_ms;
    unsigned connect_ms;
    pending *head;          /* commands in flight, oldest first: Redis answers in order */
    pending *tail;
    int refs;               /* while closing: open timers, plus 'gai' in flight */
    redisAsyncContext *ac;  /* NULL while disconnected */
    int ready;
    int closing;
    unsigned backoff_ms;
    char host[256];
    char addr[INET6_ADDRSTRLEN];    /* numeric address of the current attempt */
    int port;
    char password[256];
};

struct pending {
    rlink *l;
    rlink_cb cb;            /* NULL: the reply is dropped */
    void *arg;
    uint64_t sent_ms;
    pending *next;
};

static void link_connect(rlink *l);
static void on_watch(uv_timer_t *t);
static void release(rlink *l);

/* ------------------------------------------------------------------------
 * Our own libuv adapter for hiredis' async API. The one shipped with hiredis
 * 0.14 ignores a poll error: libuv reports a refused connect as POLLERR,
 * stops the watcher and passes an error status, which that adapter drops,
 * so hiredis never learns the connect failed and the link hangs for good.
 * Here an error hands both directions to hiredis, which then sees the
 * socket error and fails the connect or the connection.
 * ------------------------------------------------------------------------ */

typedef struct rl_events {
    redisAsyncContext *ac;  /* NULL once hiredis let go */
    uv_poll_t poll;
    int events;
} rl_events;

static void ev_poll(uv_poll_t *h, int status, int events)
{
    rl_events *e = h->data;

    if (status < 0)
        events = UV_READABLE | UV_WRITABLE;
    /* Write first: that is where hiredis completes (or fails) a connect. */
    if (e->ac && (events & UV_WRITABLE))
        redisAsyncHandleWrite(e->ac);
    if (e->ac && (events & UV_READABLE))
        redisAsyncHandleRead(e->ac);
}

static void ev_update(rl_events *e, int add, int what)
{
    e->events = add ? (e->events | what) : (e->events & ~what);
    if (e->events)
        uv_poll_start(&e->poll, e->events, ev_poll);
    else
        uv_poll_stop(&e->poll);
}

static void ev_add_read(void *p) { ev_update(p, 1, UV_READABLE); }
static void ev_del_read(void *p) { ev_update(p, 0, UV_READABLE); }
static void ev_add_write(void *p) { ev_update(p, 1, UV_WRITABLE); }
static void ev_del_write(void *p) { ev_update(p, 0, UV_WRITABLE); }

static void ev_closed(uv_handle_t *h)
{
    free(h->data);
}

static void ev_cleanup(void *p)
{
    rl_events *e = p;

    e->ac = NULL;   /* the context is going: no more calls into it */
    uv_close((uv_handle_t *)&e->poll, ev_closed);
}

static int ev_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
    rl_events *e = calloc(1, sizeof(*e));

    if (e == NULL)
        return REDIS_ERR;
    if (uv_poll_init(loop, &e->poll, ac->c.fd) != 0) {
        free(e);
        return REDIS_ERR;
    }
    e->ac = ac;
    e->poll.data = e;
    ac->ev.data = e;
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = ev_cleanup;
    return REDIS_OK;
}

static void on_retry(uv_timer_t *t)
{
    link_connect(t->data);
}

static void retry_later(rlink *l)
{
    l->ac = NULL;
    l->ready = 0;
    if (l->closing)
        return;
    uv_timer_start(&l->retry, on_retry, l->backoff_ms, 0);
    l->backoff_ms = l->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : l->backoff_ms * 2;
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    rlink *l = ac->data;

    uv_timer_stop(&l->deadline);
    if (status != REDIS_OK) {
        log_warn("rlink", "connect to %s:%d failed: %s; retry in %u ms", l->host, l->port,
                 ac->errstr, l->backoff_ms);
        retry_later(l);     /* hiredis frees 'ac' after this returns */
        return;
    }
    log_info("rlink", "connected to %s:%d (%s)", l->host, l->port, l->addr);
    l->ready = 1;
    l->backoff_ms = BACKOFF_MIN_MS;
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    rlink *l = ac->data;

    if (status != REDIS_OK)
        log_warn("rlink", "lost %s:%d: %s", l->host, l->port, ac->errstr);
    retry_later(l);
}

static void on_auth(redisAsyncContext *ac, void *reply, void *arg)
{
    redisReply *r = reply;

    (void)arg;
    if (r && r->type == REDIS_REPLY_ERROR) {
        log_error("rlink", "AUTH refused");
        redisAsyncDisconnect(ac);
    }
}

/* A connect that neither succeeds nor fails (SYNs dropped) is abandoned.
 * A timer callback is outside hiredis, so freeing the context here is safe;
 * it was never connected, so hiredis calls no disconnect callback. */
static void on_deadline(uv_timer_t *t)
{
    rlink *l = t->data;
    redisAsyncContext *ac = l->ac;

    if (ac == NULL || l->ready)
        return;
    log_warn("rlink", "connect to %s:%d timed out after %u ms; retry in %u ms", l->host, l->port,
             l->connect_ms, l->backoff_ms);
    redisAsyncFree(ac);     /* a queued AUTH gets its NULL reply */
    if (l->ac == ac)
        retry_later(l);
}

/* Connects to the numeric address in l->addr: hiredis' own getaddrinfo
 * then parses the number and asks no resolver, so the loop never waits. */
static void connect_addr(rlink *l)
{
    redisAsyncContext *ac = redisAsyncConnect(l->addr, l->port);

    if (ac == NULL || ac->err) {
        log_warn("rlink", "connect to %s:%d failed: %s", l->host, l->port,
                 ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        retry_later(l);
        return;
    }
    ac->data = l;
    if (ev_attach(ac, l->loop) != REDIS_OK) {
        log_warn("rlink", "cannot watch the connection to %s:%d; retry in %u ms", l->host,
                 l->port, l->backoff_ms);
        redisAsyncFree(ac);
        retry_later(l);
        return;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    l->ac = ac;
    uv_timer_start(&l->deadline, on_deadline, l->connect_ms, 0);
    if (l->password[0]) {
        const char *argv[] = {"AUTH", l->password};
        size_t lens[] = {4, strlen(l->password)};

        /* Queued first, so it reaches Redis before any command. */
        redisAsyncCommandArgv(ac, on_auth, NULL, 2, argv, lens);
    }
}

static const struct addrinfo *first_of(const struct addrinfo *res, int family)
{
    for (; res; res = res->ai_next)
        if (res->ai_family == family)
            return res;
    return NULL;
}

/* The first IPv4 address of 'res', else its first IPv6 one (the order
 * hiredis tries), into l->addr. 0, or -1 when it holds neither. */
static int pick_addr(rlink *l, const struct addrinfo *res)
{
    const struct addrinfo *p;

    if ((p = first_of(res, AF_INET)) != NULL)
        return uv_ip4_name((const struct sockaddr_in *)p->ai_addr, l->addr, sizeof(l->addr));
    if ((p = first_of(res, AF_INET6)) != NULL)
        return uv_ip6_name((const struct sockaddr_in6 *)p->ai_addr, l->addr, sizeof(l->addr));
    return -1;
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    rlink *l = req->data;
    int rc = status;

    l->resolving = 0;
    if (l->closing) {
        if (res)
            uv_freeaddrinfo(res);
        release(l);
        return;
    }
    if (rc == 0 && pick_addr(l, res) != 0)
        rc = UV_EAI_ADDRFAMILY;
    if (res)
        uv_freeaddrinfo(res);
    if (rc != 0) {
        log_warn("rlink", "cannot resolve redis host %s: %s; retry in %u ms", l->host,
                 uv_strerror(rc), l->backoff_ms);
        retry_later(l);
        return;
    }
    log_debug("rlink", "resolved %s to %s", l->host, l->addr);
    connect_addr(l);
}

/* One attempt: a numeric host is used as it is; a name is resolved on the
 * thread pool first, at every attempt (a failover may move the name). */
static void link_connect(rlink *l)
{
    struct addrinfo hints;
    unsigned char num[sizeof(struct in6_addr)];
    size_t len;
    int rc;

    len = strlen(l->host);
    if (len < sizeof(l->addr) &&
        (uv_inet_pton(AF_INET, l->host, num) == 0 || uv_inet_pton(AF_INET6, l->host, num) == 0)) {
        memcpy(l->addr, l->host, len + 1);
        connect_addr(l);
        return;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if ((rc = uv_getaddrinfo(l->loop, &l->gai, on_resolved, l->host, NULL, &hints)) != 0) {
        log_warn("rlink", "cannot resolve redis host %s: %s; retry in %u ms", l->host,
                 uv_strerror(rc), l->backoff_ms);
        retry_later(l);
        return;
    }
    l->resolving = 1;
}

rlink *rlink_new(uv_loop_t *loop, const char *host, int port, const char *password,
                 unsigned timeout_ms, unsigned connect_ms)
{
    rlink *l = calloc(1, sizeof(*l));

    if (l == NULL)
        return NULL;
    l->loop = loop;
    l->port = port;
    l->backoff_ms = BACKOFF_MIN_MS;
    snprintf(l->host, sizeof(l->host), "%s", host);
    snprintf(l->password, sizeof(l->password), "%s", password ? password : "");
    l->timeout_ms = timeout_ms;
    l->connect_ms = connect_ms;
    l->gai.data = l;
    uv_timer_init(loop, &l->retry);
    l->retry.data = l;
    uv_timer_init(loop, &l->deadline);
    l->deadline.data = l;
    uv_timer_init(loop, &l->watch);
    l->watch.data = l;
    uv_timer_start(&l->watch, on_watch, timeout_ms / 4 + 1, timeout_ms / 4 + 1);
    link_connect(l);
    return l;
}

int rlink_ready(const rlink *l)
{
    return l->ready;
}

/* Replies (and the NULLs of a lost link) come in the order of the commands. */
static void on_reply(redisAsyncContext *ac, void *reply, void *arg)
{
    pending *p = arg;
    rlink *l = p->l;

    (void)ac;
    l->head = p->next;
    if (l->head == NULL)
        l->tail = NULL;
    if (p->cb)
        p->cb(reply, p->arg);
    free(p);
}

/* A Redis that accepts but does not answer (hung, stopped) must not hold
 * uploads: past the timeout the link is dropped, every waiting command gets
 * its NULL reply (503 or fallback), and the link reconnects. */
static void on_watch(uv_timer_t *t)
{
    rlink *l = t->data;

    if (l->head == NULL || l->ac == NULL ||
        uv_now(l->loop) - l->head->sent_ms < l->timeout_ms)
        return;
    log_warn("rlink", "%s:%d did not answer within %u ms: dropping the link", l->host, l->port,
             l->timeout_ms);
    redisAsyncFree(l->ac);      /* runs on_reply(NULL) for each, then on_disconnect */
}

int rlink_command(rlink *l, int argc, const char **argv, const size_t *lens, rlink_cb cb,
                  void *arg)
{
    pending *p;

    if (!l->ready || l->ac == NULL)
        return LJ_EUNAVAIL;
    if ((p = malloc(sizeof(*p))) == NULL)
        return LJ_ENOMEM;
    p->l = l;
    p->cb = cb;
    p->arg = arg;
    p->sent_ms = uv_now(l->loop);
    p->next = NULL;
    if (redisAsyncCommandArgv(l->ac, on_reply, p, argc, argv, lens) != REDIS_OK) {
        free(p);
        return LJ_EUNAVAIL;
    }
    if (l->tail)
        l->tail->next = p;
    else
        l->head = p;
    l->tail = p;
    return 0;
}

int rlink_idle(const rlink *l)
{
    return l->head == NULL;
}

static void release(rlink *l)
{
    if (--l->refs == 0)
        free(l);
}

static void on_timer_closed(uv_handle_t *h)
{
    release(h->data);
}

void rlink_close(rlink *l)
{
    l->closing = 1;
    /* Not a graceful disconnect: that would wait for replies after 'l' is
     * gone. Pending callbacks run now with NULL replies. */
    if (l->ac)
        redisAsyncFree(l->ac);
    l->refs = 3 + l->resolving;
    /* A lookup not started yet is dropped (its callback says UV_ECANCELED);
     * a running one ends within the resolver's timeout. */
    if (l->resolving)
        uv_cancel((uv_req_t *)&l->gai);
    uv_close((uv_handle_t *)&l->retry, on_timer_closed);
    uv_close((uv_handle_t *)&l->watch, on_timer_closed);
    uv_close((uv_handle_t *)&l->deadline, on_timer_closed);
}
