#include "backlog.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"

typedef struct probe {
    struct backlog *b;
    stream_kind kind;
} probe;

struct backlog {
    uv_timer_t timer;
    rlink *link;
    long long watermark;
    char names[STREAM_KINDS][STREAM_NAME_MAX];
    long long length[STREAM_KINDS];
    probe probes[STREAM_KINDS];
    int outstanding;        /* XLEN replies still to come */
    int closed;             /* timer closed: free when 'outstanding' reaches 0 */
};

static void on_xlen(redisReply *r, void *arg)
{
    probe *p = arg;
    backlog *b = p->b;
    long long was;

    if (--b->outstanding == 0 && b->closed) {
        free(b);
        return;
    }
    if (r == NULL || r->type != REDIS_REPLY_INTEGER)
        return;
    was = b->length[p->kind];
    b->length[p->kind] = r->integer;
    if ((was >= b->watermark) != (r->integer >= b->watermark))
        log_warn("backlog", "stream=%s length=%lld %s the high watermark %lld",
                 b->names[p->kind], r->integer, r->integer >= b->watermark ? "reached" : "below",
                 b->watermark);
}

static void poll_lengths(uv_timer_t *t)
{
    backlog *b = t->data;
    int k;

    if (b->outstanding)
        return;     /* the last round is still out */
    for (k = 0; k < STREAM_KINDS; k++) {
        const char *argv[] = {"XLEN", b->names[k]};
        size_t lens[] = {4, strlen(b->names[k])};

        if (rlink_command(b->link, 2, argv, lens, on_xlen, &b->probes[k]) == 0)
            b->outstanding++;
    }
}

backlog *backlog_new(uv_loop_t *loop, rlink *link, const lj_config *cfg)
{
    backlog *b = calloc(1, sizeof(*b));
    int k;

    if (b == NULL)
        return NULL;
    b->link = link;
    b->watermark = cfg->stream_high_watermark;
    for (k = 0; k < STREAM_KINDS; k++) {
        stream_name(b->names[k], sizeof(b->names[k]), cfg->stream_prefix, (stream_kind)k);
        b->length[k] = -1;
        b->probes[k].b = b;
        b->probes[k].kind = (stream_kind)k;
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
        free(b);
}

void backlog_close(backlog *b)
{
    uv_close((uv_handle_t *)&b->timer, on_closed);
}

int backlog_full(const backlog *b, stream_kind kind)
{
    return b->length[kind] >= b->watermark;
}

long long backlog_length(const backlog *b, stream_kind kind)
{
    return b->length[kind];
}
