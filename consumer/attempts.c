#include "attempts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "log.h"
#include "rds.h"

#define PRUNE_PAGE "200"

/* KEYS[1] the hash, ARGV[1] the delta, ARGV[2..] entry IDs. Atomic, and one
 * round trip for the whole batch. */
static const char add_script[] =
    "local d = tonumber(ARGV[1]) "
    "for i = 2, #ARGV do "
    "  if redis.call('HINCRBY', KEYS[1], ARGV[i], d) <= 0 then "
    "    redis.call('HDEL', KEYS[1], ARGV[i]) end "
    "end "
    "return #ARGV - 1";

static int reply_rc(session *s, const redisReply *r, const char *what)
{
    if (r == NULL) {
        log_warn("attempts", "%s stream=%s: %s", what, s->stream, rconn_errstr(s->redis));
        return LJ_EUNAVAIL;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        log_warn("attempts", "%s stream=%s: %s", what, s->stream, r->str);
        return LJ_EREDIS;
    }
    return 0;
}

/* Runs the command 'head' (of 'nhead' arguments) followed by the IDs of the
 * 'n' entries 'e'; the reply (or NULL) in '*r'. 0 or LJ_ENOMEM. */
static int with_ids(session *s, const char *const *head, size_t nhead, batch_entry *const *e,
                    size_t n, redisReply **r)
{
    const char **argv = malloc((nhead + n) * sizeof(*argv));
    size_t i;

    if (argv == NULL)
        return LJ_ENOMEM;
    for (i = 0; i < nhead; i++)
        argv[i] = head[i];
    for (i = 0; i < n; i++)
        argv[nhead + i] = e[i]->id;
    *r = session_command(s, (int)(nhead + n), argv);
    free(argv);
    return 0;
}

int attempts_read(session *s, batch_entry *const *e, size_t n)
{
    const char *head[] = {"HMGET", s->attempts_key};
    redisReply *r;
    size_t i;
    int rc;

    if (n == 0)
        return 0;
    if ((rc = with_ids(s, head, 2, e, n, &r)) != 0)
        return rc;
    if ((rc = reply_rc(s, r, "HMGET")) == 0 &&
        (r->type != REDIS_REPLY_ARRAY || r->elements != n))
        rc = LJ_EREDIS;
    for (i = 0; rc == 0 && i < n; i++)
        e[i]->attempts = r->element[i]->type == REDIS_REPLY_STRING
                             ? strtoll(r->element[i]->str, NULL, 10) : 0;
    if (r)
        freeReplyObject(r);
    return rc;
}

int attempts_add(session *s, batch_entry *const *e, size_t n, int delta)
{
    const char *head[] = {"EVAL", add_script, "1", s->attempts_key, delta > 0 ? "1" : "-1"};
    redisReply *r;
    int rc;

    if (n == 0)
        return 0;
    if ((rc = with_ids(s, head, 5, e, n, &r)) != 0)
        return rc;
    rc = reply_rc(s, r, "counting attempts");
    if (r)
        freeReplyObject(r);
    return rc;
}

void attempts_prune(session *s, const char *minid)
{
    const char *scan[] = {"HSCAN", s->attempts_key, s->prune_cursor, "COUNT", PRUNE_PAGE};
    redisReply *r = session_command(s, 5, scan);
    const redisReply *kv;
    size_t i;

    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_STRING ||
        r->element[0]->len >= sizeof(s->prune_cursor) ||
        (kv = r->element[1])->type != REDIS_REPLY_ARRAY)
        goto out;
    memcpy(s->prune_cursor, r->element[0]->str, r->element[0]->len + 1);   /* next page */
    for (i = 0; i + 1 < kv->elements; i += 2) {
        const char *argv[] = {"HDEL", s->attempts_key, kv->element[i]->str};
        redisReply *d;

        if (kv->element[i]->type != REDIS_REPLY_STRING ||
            stream_id_cmp(kv->element[i]->str, minid) >= 0)
            continue;
        if ((d = session_command(s, 3, argv)) != NULL)
            freeReplyObject(d);
        log_debug("attempts", "pruned stream=%s id=%s", s->stream, kv->element[i]->str);
    }
out:
    if (r)
        freeReplyObject(r);
}
