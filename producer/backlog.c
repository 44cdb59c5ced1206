#include "backlog.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"

typedef struct probe {
    struct backlog *b;
    stream_kind kind;
    unsigned shard;
} probe;

struct backlog {
    uv_timer_t timer;
    rcluster *link;
    long long watermark;
    unsigned nshards;
    int tagged;             /* shard names carry the hash tag (stream_tagged) */
    char prefix[64];
    long long *length;      /* [kind * nshards + shard] */
    probe *probes;          /* the same order */
    int outstanding;        /* XLEN replies still to come */
    int closed;             /* timer closed: free when 'outstanding' reaches 0 */
};

static void backlog_free(backlog *b)
{
    free(b->length);
    free(b->probes);
    free(b);
}

static void shard_name(const backlog *b, const probe *p, char *out, size_t len)
{
    stream_shard_name(out, len, b->prefix, p->kind, p->shard, b->tagged);
}

static void on_xlen(redisReply *r, void *arg)
{
    probe *p = arg;
    backlog *b = p->b;
    long long *len = &b->length[(size_t)(p - b->probes)];
    char name[STREAM_NAME_MAX];
    long long was;

    if (--b->outstanding == 0 && b->closed) {
        backlog_free(b);
        return;
    }
    if (r == NULL || r->type != REDIS_REPLY_INTEGER)
        return;
    was = *len;
    *len = r->integer;
    if ((was >= b->watermark) == (r->integer >= b->watermark))
        return;
    shard_name(b, p, name, sizeof(name));
    log_warn("backlog", "stream=%s length=%lld %s the high watermark %lld", name, r->integer,
             r->integer >= b->watermark ? "reached" : "below", b->watermark);
}

static void poll_lengths(uv_timer_t *t)
{
    backlog *b = t->data;
    size_t i;

    if (b->outstanding)
        return;     /* the last round is still out */
    for (i = 0; i < STREAM_KINDS * b->nshards; i++) {
        char name[STREAM_NAME_MAX];
        const char *argv[] = {"XLEN", name};
        size_t lens[2] = {4, 0};

        shard_name(b, &b->probes[i], name, sizeof(name));
        lens[1] = strlen(name);
        if (rcluster_command(b->link, name, 2, argv, lens, on_xlen, &b->probes[i]) == 0)
            b->outstanding++;
    }
}

backlog *backlog_new(uv_loop_t *loop, rcluster *link, const lj_config *cfg)
{
    backlog *b = calloc(1, sizeof(*b));
    size_t n = STREAM_KINDS * (size_t)cfg->stream_shards;
    size_t i;

    if (b == NULL)
        return NULL;
    b->link = link;
    b->watermark = cfg->stream_high_watermark;
    b->nshards = (unsigned)cfg->stream_shards;
    b->tagged = stream_tagged(b->nshards, rcluster_is_cluster(link));
    memcpy(b->prefix, cfg->stream_prefix, sizeof(b->prefix));
    b->length = calloc(n, sizeof(*b->length));
    b->probes = calloc(n, sizeof(*b->probes));
    if (b->length == NULL || b->probes == NULL) {
        backlog_free(b);
        return NULL;
    }
    for (i = 0; i < n; i++) {
        b->length[i] = -1;
        b->probes[i].b = b;
        b->probes[i].kind = (stream_kind)(i / b->nshards);
        b->probes[i].shard = (unsigned)(i % b->nshards);
    }
    uv_timer_init(loop, &b->timer);
    b->timer.data = b;
    uv_timer_start(&b->timer, poll_lengths, 0, (uint64_t)cfg->ratio_refresh_ms);
    return b;
}

static void on_closed(uv_handle_t *h)
{
    backlog *b = h->data;

    b->closed = 1;
    if (b->outstanding == 0)
        backlog_free(b);
}

void backlog_close(backlog *b)
{
    uv_close((uv_handle_t *)&b->timer, on_closed);
}

long long backlog_length(const backlog *b, stream_kind kind, unsigned shard)
{
    return b->length[(size_t)kind * b->nshards + shard % b->nshards];
}

int backlog_full(const backlog *b, stream_kind kind, unsigned shard)
{
    return backlog_length(b, kind, shard) >= b->watermark;
}
