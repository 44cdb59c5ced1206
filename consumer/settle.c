#include "settle.h"

#include <stdio.h>
#include <stdlib.h>

#include "err.h"
#include "log.h"
#include "rds.h"

/* KEYS[1] stream, KEYS[2] counts, KEYS[3] attempts; ARGV[1] group,
 * ARGV[2] forget (1: remove attempts), ARGV[3] the first field,
 * ARGV[4] how many may count under it, ARGV[5] the field of the rest,
 * ARGV[6..] entry IDs. An entry counts only when this XACK removed it from
 * the pending list: one another worker settled first is not counted twice. */
static const char settle_script[] =
    "local acked = 0 "
    "for i = 6, #ARGV do "
    "  acked = acked + redis.call('XACK', KEYS[1], ARGV[1], ARGV[i]) "
    "  if ARGV[2] == '1' then redis.call('HDEL', KEYS[3], ARGV[i]) end "
    "end "
    "local first = math.min(acked, tonumber(ARGV[4])) "
    "if first > 0 then redis.call('HINCRBY', KEYS[2], ARGV[3], first) end "
    "if acked > first then redis.call('HINCRBY', KEYS[2], ARGV[5], acked - first) end "
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

static int run(session *s, const char **argv, int argc, size_t n)
{
    redisReply *r = rds_command(s->redis, argc, argv);
    int rc = 0;

    if (r == NULL) {
        log_warn("settle", "settling %zu entries stream=%s: %s", n, s->stream, s->redis->errstr);
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
    const char *field[] = {STREAM_COUNT_STORED, STREAM_COUNT_DUPLICATE};
    char first_max[24];
    const char **argv;
    size_t i;
    int rc;

    if (n == 0)
        return 0;
    if ((argv = malloc((n + 11) * sizeof(*argv))) == NULL)
        return LJ_ENOMEM;
    argv[0] = "EVAL";
    argv[1] = settle_script;
    argv[2] = "3";
    argv[3] = s->stream;
    argv[4] = s->counts_key;
    argv[5] = s->attempts_key;
    argv[6] = s->group;
    argv[7] = forget ? "1" : "0";
    if (c->gone) {
        field[0] = field[1] = STREAM_COUNT_GONE;
    }
    snprintf(first_max, sizeof(first_max), "%zu", c->gone ? n : c->stored);
    argv[8] = field[0];
    argv[9] = first_max;
    argv[10] = field[1];
    for (i = 0; i < n; i++)
        argv[11 + i] = ids[i];
    rc = run(s, argv, (int)(n + 11), n);
    free(argv);
    return rc;
}

int settle_dead(session *s, const char *id, const char *const *fields, size_t nfields)
{
    char maxlen[24];
    const char **argv;
    size_t i;
    int rc;

    if ((argv = malloc((nfields + 10) * sizeof(*argv))) == NULL)
        return LJ_ENOMEM;
    snprintf(maxlen, sizeof(maxlen), "%d", s->w->cfg->dead_stream_maxlen);
    argv[0] = "EVAL";
    argv[1] = dead_script;
    argv[2] = "4";
    argv[3] = s->stream;
    argv[4] = s->counts_key;
    argv[5] = s->attempts_key;
    argv[6] = s->dead_stream;
    argv[7] = s->group;
    argv[8] = id;
    argv[9] = maxlen;
    for (i = 0; i < nfields; i++)
        argv[10 + i] = fields[i];
    rc = run(s, argv, (int)(nfields + 10), 1);
    free(argv);
    return rc;
}

int settle_count_gone(session *s, size_t n)
{
    char num[24];
    const char *argv[] = {"HINCRBY", s->counts_key, STREAM_COUNT_GONE, num};
    redisReply *r;

    if (n == 0)
        return 0;
    snprintf(num, sizeof(num), "%zu", n);
    if ((r = rds_command(s->redis, 4, argv)) == NULL)
        return LJ_EUNAVAIL;
    freeReplyObject(r);
    return 0;
}
