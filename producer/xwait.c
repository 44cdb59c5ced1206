#include "xwait.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "log.h"
#include "streams.h"

#define ID_MAX 64

/* One XADD (and its WAITs) in flight. Freed when no reply is awaited. */
typedef struct xw {
    rcluster *link;
    xwait_cb cb;
    void *arg;
    unsigned need;
    char key[STREAM_NAME_MAX];
    char wait_args[2][16];      /* need, ms */
    unsigned long long redirects;   /* the link's MOVED + ASK at send */
    int awaited;                /* replies still to come */
    int xadd_seen;              /* the XADD's reply came */
    int answered;               /* 'cb' ran */
    int first_out;              /* the pipelined WAIT awaits its reply */
    int first_stale;            /* ... and cannot vouch for the entry */
    char id[ID_MAX];
    size_t id_len;
} xw;

static unsigned long long redirects_of(const rcluster *link)
{
    rcluster_counts n;

    rcluster_get_counts(link, &n);
    return n.moved + n.ask;
}

static void settle(xw *w)
{
    if (--w->awaited == 0)
        free(w);
}

static void answer(xw *w, xverdict v, const redisReply *err)
{
    if (w->answered)
        return;
    w->answered = 1;
    w->cb(v, v == XV_ADDED ? w->id : NULL, v == XV_ADDED ? w->id_len : 0, err, w->arg);
}

static void on_wait(redisReply *r, void *arg);
static void on_wait_again(redisReply *r, void *arg);

/* Sends WAIT to the master of the key, pipelined after the XADD; 'again':
 * from the XADD's reply, to the node that gave it (after an ASK, the slot's
 * importing node, which the map does not name yet). */
static int send_wait(xw *w, int again)
{
    const char *argv[] = {"WAIT", w->wait_args[0], w->wait_args[1]};
    size_t lens[] = {4, strlen(w->wait_args[0]), strlen(w->wait_args[1])};
    int rc;

    w->awaited++;
    if (again)
        rc = rcluster_command_same_node(w->link, 3, argv, lens, on_wait_again, w);
    else
        rc = rcluster_command(w->link, w->key, 3, argv, lens, on_wait, w);
    if (rc != 0)
        w->awaited--;
    else if (!again)
        w->first_out = 1;
    return rc;
}

static void judge_wait(xw *w, const redisReply *r)
{
    static const redisReply id_reply = {.type = REDIS_REPLY_STRING};
    xverdict v = xverdict_of(&id_reply, r, w->need);

    if (v != XV_ADDED)
        log_warn("ingest", "WAIT %u: %lld replicas for %s on %s: not confirmed", w->need,
                 r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1LL, w->id, w->key);
    answer(w, v, NULL);
}

/* The WAIT pipelined after the XADD. */
static void on_wait(redisReply *r, void *arg)
{
    xw *w = arg;

    w->first_out = 0;
    if (!w->xadd_seen)
        w->first_stale = 1;     /* the XADD went elsewhere: this vouches for nothing */
    else if (!w->first_stale)
        judge_wait(w, r);
    settle(w);
}

/* The WAIT sent after the XADD's reply, when the first could not vouch. */
static void on_wait_again(redisReply *r, void *arg)
{
    judge_wait(arg, r);
    settle(arg);
}

static void keep_id(xw *w, const redisReply *r)
{
    size_t n = r->len < ID_MAX ? r->len : ID_MAX - 1;

    memcpy(w->id, r->str, n);
    w->id[n] = '\0';
    w->id_len = n;
}

/* The XADD's reply: a failure answers at once; an ID waits for a WAIT that
 * vouches for it, sent again when the pipelined one cannot. */
static void on_xadd(redisReply *r, void *arg)
{
    xw *w = arg;
    xverdict v = xverdict_of(r, NULL, 0);

    w->xadd_seen = 1;
    if (v == XV_ADDED)
        keep_id(w, r);
    if (v != XV_ADDED || w->need == 0) {
        answer(w, v, v == XV_REFUSED ? r : NULL);
    } else if (w->first_stale || !w->first_out || redirects_of(w->link) != w->redirects) {
        w->first_stale = 1;
        if (send_wait(w, 1) != 0)
            answer(w, XV_UNREPLICATED, NULL);
    }
    settle(w);
}

int xwait_xadd(rcluster *link, const char *key, int argc, const char **argv,
               const size_t *lens, unsigned need, unsigned wait_ms, xwait_cb cb, void *arg)
{
    xw *w = calloc(1, sizeof(*w));
    int rc;

    if (w == NULL)
        return LJ_ENOMEM;
    w->link = link;
    w->cb = cb;
    w->arg = arg;
    w->need = need;
    snprintf(w->key, sizeof(w->key), "%s", key);
    snprintf(w->wait_args[0], sizeof(w->wait_args[0]), "%u", need);
    snprintf(w->wait_args[1], sizeof(w->wait_args[1]), "%u", wait_ms);
    w->redirects = redirects_of(link);
    w->awaited = 1;
    if ((rc = rcluster_command(link, key, argc, argv, lens, on_xadd, w)) != 0) {
        free(w);
        return rc;
    }
    /* A WAIT that cannot be sent now leaves the XADD alone: its reply then
     * asks for another, and failing that the upload is not confirmed. */
    if (need > 0)
        send_wait(w, 0);
    return 0;
}
