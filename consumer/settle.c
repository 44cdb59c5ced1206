#include "settle.h"

#include <stdio.h>
#include <stdlib.h>

#include "err.h"
#include "log.h"

/* One HINCRBY <counts> per nonzero count of 'c', into 'cmds' (room for 4,
 * built in 'argv' and 'num'); '*total' grows by how many. */
static void add_counts(session *s, const settle_counts *c, rds_cmd *cmds, size_t *total,
                       const char *argv[4][4], char num[4][24])
{
    const char *field[4] = {STREAM_COUNT_STORED, STREAM_COUNT_DUPLICATE, STREAM_COUNT_DEAD,
                            STREAM_COUNT_GONE};
    size_t value[4] = {c->stored, c->duplicate, c->dead, c->gone};
    size_t i;
    size_t k = 0;

    for (i = 0; i < 4; i++) {
        if (value[i] == 0)
            continue;
        snprintf(num[k], sizeof(num[k]), "%zu", value[i]);
        argv[k][0] = "HINCRBY";
        argv[k][1] = s->counts_key;
        argv[k][2] = field[i];
        argv[k][3] = num[k];
        cmds[k].argc = 4;
        cmds[k].argv = argv[k];
        k++;
    }
    *total += k;
}

/* XACK <stream> <group> ids... (or HDEL <attempts> ids... when 'hdel'). */
static const char **id_command(session *s, const char *const *ids, size_t n, int hdel,
                               int *argc)
{
    const char **argv = malloc((n + 3) * sizeof(*argv));
    size_t head = hdel ? 2 : 3;
    size_t i;

    if (argv == NULL)
        return NULL;
    argv[0] = hdel ? "HDEL" : "XACK";
    argv[1] = hdel ? s->attempts_key : s->stream;
    argv[2] = s->group;
    for (i = 0; i < n; i++)
        argv[head + i] = ids[i];
    *argc = (int)(head + n);
    return argv;
}

static int check_exec(session *s, const redisReply *r, size_t n)
{
    size_t i;

    if (r == NULL) {
        log_warn("settle", "settling %zu entries stream=%s: %s", n, s->stream, s->redis->errstr);
        return LJ_EUNAVAIL;
    }
    if (r->type != REDIS_REPLY_ARRAY) {
        log_warn("settle", "settling %zu entries stream=%s refused: %s", n, s->stream,
                 r->type == REDIS_REPLY_ERROR ? r->str : "aborted");
        return LJ_EREDIS;
    }
    for (i = 0; i < r->elements; i++)
        if (r->element[i]->type == REDIS_REPLY_ERROR) {
            /* Applied in part (MULTI does not roll back): the XACK is the
             * one that counts, and its reply is checked below. */
            log_warn("settle", "settle stream=%s: %s", s->stream, r->element[i]->str);
        }
    return 0;
}

int settle_entries(session *s, const char *const *ids, size_t n, const settle_counts *counts,
                   int forget, const rds_cmd *first)
{
    const char *cargv[4][4];
    char num[4][24];
    rds_cmd cmds[7];
    const char **ack = NULL;
    const char **hdel = NULL;
    redisReply *r = NULL;
    size_t k = 0;
    size_t ack_at;
    int rc = LJ_ENOMEM;

    if (n == 0)
        return 0;
    if (first)
        cmds[k++] = *first;
    if ((ack = id_command(s, ids, n, 0, &cmds[k].argc)) == NULL)
        goto out;
    cmds[k].argv = ack;
    ack_at = k++;
    if (forget) {
        if ((hdel = id_command(s, ids, n, 1, &cmds[k].argc)) == NULL)
            goto out;
        cmds[k++].argv = hdel;
    }
    add_counts(s, counts, cmds + k, &k, cargv, num);
    r = rds_atomic(s->redis, cmds, k);
    if ((rc = check_exec(s, r, n)) == 0 && r->elements > ack_at &&
        r->element[ack_at]->type == REDIS_REPLY_INTEGER) {
        atomic_fetch_add(&s->w->stats.entries_acked, (unsigned long long)r->element[ack_at]->integer);
    } else if (rc == 0) {
        rc = LJ_EREDIS;
    }
out:
    if (r)
        freeReplyObject(r);
    free(ack);
    free(hdel);
    return rc;
}
