#include "claim.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "err.h"
#include "handle.h"
#include "log.h"
#include "rds.h"
#include "settle.h"

#define TAKEOVER_CHUNK "1000"
#define AUTOCLAIM_ROUNDS 10

/* Nonzero when 'name' is host:pid:n of this machine and that pid is gone.
 * The host part carries the machine key (worker.h: boot and PID namespace),
 * so a pid is only ever looked up where it means the same process. */
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

/* Counts as gone those of the 'n' entries 'ids' an XCLAIM left out that
 * are pending nowhere any more: Redis 7.0's XCLAIM drops entries deleted
 * from the stream from the pending list without a word. (Those another
 * worker claimed first are still pending, under its name.) */
static void count_vanished(session *s, const char *const *ids, size_t n)
{
    size_t gone = 0;
    size_t i;

    for (i = 0; i < n; i++) {
        const char *argv[] = {"XPENDING", s->stream, s->group, ids[i], ids[i], "1"};
        redisReply *r = session_command(s, 6, argv);

        gone += r && r->type == REDIS_REPLY_ARRAY && r->elements == 0;
        if (r)
            freeReplyObject(r);
    }
    if (gone && settle_count_gone(s, gone) == 0)
        atomic_fetch_add(&s->w->stats.entries_gone, gone);
}

/* XCLAIMs every pending entry of consumer 'name' to this worker. */
static int take_over(session *s, const char *name)
{
    const char *pargv[] = {"XPENDING", s->stream, s->group, "-", "+", TAKEOVER_CHUNK, name};
    int moved = 0;

    for (;;) {
        redisReply *p = session_command(s, 7, pargv);
        const char **argv;
        long long least = 0;
        char idle[24];
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
        /* Least idle time: the entries' own, so a second claimer, whose
         * XCLAIM comes after ours reset it, takes nothing. */
        for (i = 0; i < n; i++)
            if (i == 0 || p->element[i]->element[2]->integer < least)
                least = p->element[i]->element[2]->integer;
        snprintf(idle, sizeof(idle), "%lld", least);
        argv[0] = "XCLAIM";
        argv[1] = s->stream;
        argv[2] = s->group;
        argv[3] = s->w->name;
        argv[4] = idle;
        for (i = 0; i < n; i++)
            argv[5 + i] = p->element[i]->element[0]->str;
        c = session_command(s, (int)(n + 5), argv);
        if (c && c->type == REDIS_REPLY_ARRAY && c->elements < n)
            count_vanished(s, argv + 5, n);
        free(argv);
        freeReplyObject(p);
        if (c == NULL)
            return LJ_EUNAVAIL;
        if (c->type == REDIS_REPLY_ERROR) {
            log_error("claim", "XCLAIM from %s: %s", name, c->str);
            freeReplyObject(c);
            return LJ_EREDIS;
        }
        moved += (int)c->elements;
        i = c->elements;
        freeReplyObject(c);
        if (i == 0)
            break;      /* taken by another worker meanwhile, or vanished */
    }
    log_info("claim", "took over dead consumer=%s stream=%s entries=%d", name, s->stream, moved);
    atomic_fetch_add(&s->w->stats.claimed, (unsigned long long)moved);
    return 0;
}

/* KEYS[1] stream; ARGV group, consumer, least idle ms. Removes the consumer
 * only if it holds nothing pending and has been idle that long, in one
 * atomic step: a batch it read meanwhile is never dropped with it. */
static const char delete_script[] =
    "for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do "
    "  local f = {} "
    "  for i = 1, #c, 2 do f[c[i]] = c[i + 1] end "
    "  if f['name'] == ARGV[2] then "
    "    if f['pending'] == 0 and f['idle'] >= tonumber(ARGV[3]) then "
    "      return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2]) + 1 "
    "    end "
    "    return 0 "
    "  end "
    "end "
    "return 0";

/* Removes consumer 'name' if it is idle 'min_idle_ms' with nothing pending. */
static void delete_consumer(session *s, const char *name, long long min_idle_ms,
                            const char *why)
{
    char idle[24];
    const char *argv[] = {"EVAL", delete_script, "1", s->stream, s->group, name, idle};
    redisReply *r;

    snprintf(idle, sizeof(idle), "%lld", min_idle_ms);
    r = session_command(s, 7, argv);
    if (r && r->type == REDIS_REPLY_INTEGER && r->integer > 0)
        log_info("claim", "removed %s consumer=%s stream=%s", why, name, s->stream);
    else if (r && r->type == REDIS_REPLY_ERROR)
        log_warn("claim", "removing consumer=%s stream=%s: %s", name, s->stream, r->str);
    if (r)
        freeReplyObject(r);
}

void claim_dead_local(session *s)
{
    const char *argv[] = {"XINFO", "CONSUMERS", s->stream, s->group};
    redisReply *r = session_command(s, 4, argv);
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
                delete_consumer(s, name->str, 0, "dead");
            /* Its entries are now ours: read them with the pending ones. */
            session_set_read(s, SESSION_READ_PENDING, "0");
        } else if (rds_map_int(c, "pending") == 0 &&
                   rds_map_int(c, "idle") > s->w->cfg->stale_consumer_ms) {
            delete_consumer(s, name->str, s->w->cfg->stale_consumer_ms, "stale");
        }
    }
out:
    if (r)
        freeReplyObject(r);
}

/* Counts the IDs XAUTOCLAIM reported as deleted from the stream (it has
 * taken them out of the pending list itself). */
static void count_deleted(session *s, const redisReply *ids)
{
    if (ids->type != REDIS_REPLY_ARRAY || ids->elements == 0)
        return;
    if (settle_count_gone(s, ids->elements) == 0)
        atomic_fetch_add(&s->w->stats.entries_gone, ids->elements);
    log_warn("claim", "%zu pending entries were deleted from stream=%s", ids->elements,
             s->stream);
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
        redisReply *r = session_command(s, 8, argv);
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
            count_deleted(s, r->element[2]);
        batch_init(&b, s->kind);
        if ((rc = batch_from_entries(r->element[1], &b)) == 0 && b.n > 0) {
            atomic_fetch_add(&s->w->stats.claimed, b.n);
            log_info("claim", "claimed idle entries stream=%s n=%zu", s->stream, b.n);
            rc = handle_batch(s, &b, 1);
        }
        batch_cleanup(&b);
        freeReplyObject(r);
        if (strcmp(cursor, "0-0") == 0)
            break;
    }
    return rc;
}
