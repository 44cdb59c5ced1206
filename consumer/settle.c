#include "settle.h"

#include <stdio.h>
#include <stdlib.h>

#include "err.h"
#include "log.h"
#include "rds.h"

/* KEYS[1] stream, KEYS[2] counts, KEYS[3] attempts; ARGV[1] group,
 * ARGV[2] forget (1: remove attempts), ARGV[3] the first field,
 * ARGV[4] how many may count under it, ARGV[5] the field of the rest,
 * ARGV[6] the batch field ("": not a batch), ARGV[7..] entry IDs. An entry
 * counts only when this XACK removed it from the pending list: one another
 * worker settled first is not counted twice (nor its batch). */
static const char settle_script[] =
    "local acked = 0 "
    "for i = 7, #ARGV do "
    "  acked = acked + redis.call('XACK', KEYS[1], ARGV[1], ARGV[i]) "
    "  if ARGV[2] == '1' then redis.call('HDEL', KEYS[3], ARGV[i]) end "
    "end "
    "local first = math.min(acked, tonumber(ARGV[4])) "
    "if first > 0 then redis.call('HINCRBY', KEYS[2], ARGV[3], first) end "
    "if acked > first then redis.call('HINCRBY', KEYS[2], ARGV[5], acked - first) end "
    "if acked > 0 and ARGV[6] ~= '' then redis.call('HINCRBY', KEYS[2], ARGV[6], 1) end "
    "return acked";

/* KEYS[1] stream, KEYS[2] counts, KEYS[3] attempts, KEYS[4] dead stream;
 * ARGV[1] group, ARGV[2] entry ID, ARGV[3] maxlen, ARGV[4..] the dead
 * letter's field/value pairs. The Redis copy is added only by the worker
 * whose XACK settled the entry. */
static const char dead_script[] =
    "local acked = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) "
    "redis.call('HDEL', KEYS[3], ARGV[2]) "
    "if acked == 1 then "
    "  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[3], '*', unpack(ARGV, 4)) "
    "  redis.call('HINCRBY', KEYS[2], 'dead', 1) "
    "end "
    "return acked";

/* Runs the script call 'head' ('nhead' arguments: EVAL, script, keys,
 * fixed arguments) followed by the 'ntail' strings 'tail', settling 'n'
 * entries. 0, LJ_EREDIS, LJ_EUNAVAIL or LJ_ENOMEM. */
static int run(session *s, const char *const *head, size_t nhead, const char *const *tail,
               size_t ntail, size_t n)
{
    const char **argv = malloc((nhead + ntail) * sizeof(*argv));
    redisReply *r;
    size_t i;
    int rc = 0;

    if (argv == NULL)
        return LJ_ENOMEM;
    for (i = 0; i < nhead; i++)
        argv[i] = head[i];
    for (i = 0; i < ntail; i++)
        argv[nhead + i] = tail[i];
    r = session_command(s, (int)(nhead + ntail), argv);
    free(argv);

    if (r == NULL) {
        log_warn("settle", "settling %zu entries stream=%s: %s", n, s->stream, rconn_errstr(s->redis));
        return LJ_EUNAVAIL;
    }
    if (r->type != REDIS_REPLY_INTEGER) {
        log_warn("settle", "settling %zu entries stream=%s refused: %s", n, s->stream,
                 r->type == REDIS_REPLY_ERROR ? r->str : "bad reply");
        rc = LJ_EREDIS;
    } else {
        atomic_fetch_add(&s->w->stats.entries_acked, (unsigned long long)r->integer);
        if ((size_t)r->integer < n)
            log_info("settle", "stream=%s %zu of %zu entries were settled by another worker",
                     s->stream, n - (size_t)r->integer, n);
    }
    freeReplyObject(r);
    return rc;
}

int settle_entries(session *s, const char *const *ids, size_t n, const settle_counts *c,
                   int forget)
{
    const char *stored = c->gone ? STREAM_COUNT_GONE : STREAM_COUNT_STORED;
    const char *rest = c->gone ? STREAM_COUNT_GONE : STREAM_COUNT_DUPLICATE;
    char first_max[24];
    const char *head[] = {"EVAL", settle_script, "3", s->stream, s->counts_key, s->attempts_key,
                          s->group, forget ? "1" : "0", stored, first_max, rest,
                          c->gone ? "" : STREAM_COUNT_BATCHES};

    if (n == 0)
        return 0;
    snprintf(first_max, sizeof(first_max), "%zu", c->gone ? n : c->stored);
    return run(s, head, sizeof(head) / sizeof(head[0]), ids, n, n);
}

int settle_dead(session *s, const char *id, const char *const *fields, size_t nfields)
{
    char maxlen[24];
    const char *head[] = {"EVAL", dead_script, "4", s->stream, s->counts_key, s->attempts_key,
                          s->dead_stream, s->group, id, maxlen};

    snprintf(maxlen, sizeof(maxlen), "%d", s->w->cfg->dead_stream_maxlen);
    return run(s, head, sizeof(head) / sizeof(head[0]), fields, nfields, 1);
}

int settle_count_gone(session *s, size_t n)
{
    char num[24];
    const char *argv[] = {"HINCRBY", s->counts_key, STREAM_COUNT_GONE, num};
    redisReply *r;

    if (n == 0)
        return 0;
    snprintf(num, sizeof(num), "%zu", n);
    if ((r = session_command(s, 4, argv)) == NULL)
        return LJ_EUNAVAIL;
    freeReplyObject(r);
    return 0;
}

int settle_count_error(session *s)
{
    const char *argv[] = {"HINCRBY", s->counts_key, STREAM_COUNT_ERRORS, "1"};
    redisReply *r;

    if (s->redis == NULL || rconn_broken(s->redis))
        return LJ_EUNAVAIL;
    if ((r = session_command(s, 4, argv)) == NULL)
        return LJ_EUNAVAIL;
    freeReplyObject(r);
    return 0;
}
