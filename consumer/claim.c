#include "claim.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "err.h"
#include "log.h"
#include "rds.h"

#define TAKEOVER_CHUNK "1000"
#define AUTOCLAIM_ROUNDS 10

/* Nonzero when 'name' is host:pid:n of this host and that pid is gone. */
static int is_dead_local(const session *s, const char *name)
{
    size_t hl = strlen(s->w->host);
    char *end;
    long pid;

    if (strncmp(name, s->w->host, hl) != 0 || name[hl] != ':')
        return 0;
    pid = strtol(name + hl + 1, &end, 10);
    if (*end != ':' || pid <= 0 || pid == (long)getpid())
        return 0;
    return kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

/* XCLAIMs every pending entry of consumer 'name' to this worker. */
static int take_over(session *s, const char *name)
{
    const char *pargv[] = {"XPENDING", s->stream, s->group, "-", "+", TAKEOVER_CHUNK, name};
    int moved = 0;

    for (;;) {
        redisReply *p = rds_command(s->redis, 7, pargv);
        const char **argv;
        redisReply *c;
        size_t i;
        size_t n;

        if (p == NULL)
            return LJ_EUNAVAIL;
        if (p->type != REDIS_REPLY_ARRAY || p->elements == 0) {
            freeReplyObject(p);
            break;
        }
        n = p->elements;
        if ((argv = malloc((n + 5) * sizeof(*argv))) == NULL) {
            freeReplyObject(p);
            return LJ_ENOMEM;
        }
        argv[0] = "XCLAIM";
        argv[1] = s->stream;
        argv[2] = s->group;
        argv[3] = s->w->name;
        argv[4] = "0";
        for (i = 0; i < n; i++)
            argv[5 + i] = p->element[i]->element[0]->str;
        c = rds_command(s->redis, (int)(n + 5), argv);
        free(argv);
        freeReplyObject(p);
        if (c == NULL)
            return LJ_EUNAVAIL;
        if (c->type == REDIS_REPLY_ERROR) {
            log_error("claim", "XCLAIM from %s: %s", name, c->str);
            freeReplyObject(c);
            return LJ_EREDIS;
        }
        freeReplyObject(c);
        moved += (int)n;
    }
    log_info("claim", "took over dead consumer=%s stream=%s entries=%d", name, s->stream, moved);
    atomic_fetch_add(&s->w->stats.claimed, (unsigned long long)moved);
    return 0;
}

static void delete_consumer(session *s, const char *name, const char *why)
{
    const char *argv[] = {"XGROUP", "DELCONSUMER", s->stream, s->group, name};
    redisReply *r = rds_command(s->redis, 5, argv);

    if (r)
        freeReplyObject(r);
    log_info("claim", "removed %s consumer=%s stream=%s", why, name, s->stream);
}

void claim_dead_local(session *s)
{
    const char *argv[] = {"XINFO", "CONSUMERS", s->stream, s->group};
    redisReply *r = rds_command(s->redis, 4, argv);
    size_t i;

    if (r == NULL || r->type != REDIS_REPLY_ARRAY)
        goto out;
    for (i = 0; i < r->elements; i++) {
        const redisReply *c = r->element[i];
        const redisReply *name = rds_map_get(c, "name");

        if (name == NULL || name->type != REDIS_REPLY_STRING ||
            strcmp(name->str, s->w->name) == 0)
            continue;
        if (is_dead_local(s, name->str)) {
            if (take_over(s, name->str) == 0)
                delete_consumer(s, name->str, "dead");
            /* Its entries are now ours: read them with the pending ones. */
            snprintf(s->next_id, sizeof(s->next_id), "0");
        } else if (rds_map_int(c, "pending") == 0 &&
                   rds_map_int(c, "idle") > s->w->cfg->stale_consumer_ms) {
            delete_consumer(s, name->str, "stale");
        }
    }
out:
    if (r)
        freeReplyObject(r);
}

/* Acknowledges the IDs XAUTOCLAIM reported as deleted from the stream. */
static void ack_deleted(session *s, const redisReply *ids)
{
    const char **argv;
    size_t i;

    if (ids->type != REDIS_REPLY_ARRAY || ids->elements == 0)
        return;
    if ((argv = malloc(ids->elements * sizeof(*argv))) == NULL)
        return;
    for (i = 0; i < ids->elements; i++)
        argv[i] = ids->element[i]->str;
    if (worker_ack(s, argv, ids->elements) == 0)
        atomic_fetch_add(&s->w->stats.entries_gone, ids->elements);
    log_warn("claim", "acknowledged %zu deleted entries stream=%s", ids->elements, s->stream);
    free(argv);
}

int claim_idle(session *s)
{
    char cursor[BATCH_ID_MAX] = "0-0";
    char idle[16];
    char count[16];
    int round;
    int rc = 0;

    snprintf(idle, sizeof(idle), "%d", s->w->cfg->claim_idle_ms);
    snprintf(count, sizeof(count), "%d", s->w->cfg->batch_size);
    for (round = 0; rc == 0 && round < AUTOCLAIM_ROUNDS; round++) {
        const char *argv[] = {"XAUTOCLAIM", s->stream, s->group, s->w->name, idle, cursor,
                              "COUNT", count};
        redisReply *r = rds_command(s->redis, 8, argv);
        batch b;

        if (r == NULL)
            return LJ_EUNAVAIL;
        if (r->type != REDIS_REPLY_ARRAY || r->elements < 2 ||
            r->element[0]->type != REDIS_REPLY_STRING ||
            r->element[0]->len >= sizeof(cursor)) {
            freeReplyObject(r);
            return LJ_EREDIS;
        }
        memcpy(cursor, r->element[0]->str, r->element[0]->len + 1);
        if (r->elements > 2)
            ack_deleted(s, r->element[2]);
        batch_init(&b, s->kind);
        if ((rc = batch_from_entries(r->element[1], &b)) == 0 && b.n > 0) {
            atomic_fetch_add(&s->w->stats.claimed, b.n);
            log_info("claim", "claimed idle entries stream=%s n=%zu", s->stream, b.n);
            rc = worker_handle_batch(s, &b, 1);
        }
        batch_cleanup(&b);
        freeReplyObject(r);
        if (strcmp(cursor, "0-0") == 0)
            break;
    }
    return rc;
}

int claim_delivery_counts(session *s, batch *b)
{
    char count[16];
    const char *argv[] = {"XPENDING", s->stream, s->group, b->entries[0].id,
                          b->entries[b->n - 1].id, count, s->w->name};
    redisReply *r;
    size_t i;
    size_t j = 0;

    snprintf(count, sizeof(count), "%zu", b->n);
    if ((r = rds_command(s->redis, 7, argv)) == NULL)
        return LJ_EUNAVAIL;
    /* Both lists ascend by ID: walk them together. */
    for (i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        const redisReply *p = r->element[i];

        if (p->type != REDIS_REPLY_ARRAY || p->elements < 4 ||
            p->element[0]->type != REDIS_REPLY_STRING)
            continue;
        while (j < b->n && strcmp(b->entries[j].id, p->element[0]->str) != 0)
            j++;
        if (j == b->n)
            break;
        b->entries[j].deliveries = p->element[3]->integer;
    }
    freeReplyObject(r);
    return 0;
}
