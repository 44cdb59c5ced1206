#include "deadletter.h"

#include <stdio.h>
#include <stdlib.h>

#include "err.h"
#include "log.h"
#include "rds.h"

int dlq_move(session *s, const batch_entry *e, const char *reason)
{
    char deliveries[24];
    const char **argv = malloc((11 + e->nfields) * sizeof(*argv));
    redisReply *r;
    size_t i;
    int rc;

    if (argv == NULL)
        return LJ_ENOMEM;
    snprintf(deliveries, sizeof(deliveries), "%lld", e->deliveries);
    argv[0] = "XADD";
    argv[1] = s->dead_stream;
    argv[2] = "*";
    argv[3] = "dead_reason";
    argv[4] = reason;
    argv[5] = "dead_id";
    argv[6] = e->id;
    argv[7] = "dead_deliveries";
    argv[8] = deliveries;
    argv[9] = "dead_consumer";
    argv[10] = s->w->name;
    for (i = 0; i < e->nfields; i++)
        argv[11 + i] = e->fields[i];
    r = rds_command(s->redis, (int)(11 + e->nfields), argv);
    free(argv);
    if (r == NULL || r->type != REDIS_REPLY_STRING) {
        log_error("deadletter", "XADD %s failed id=%s: %s", s->dead_stream, e->id,
                  r ? (r->type == REDIS_REPLY_ERROR ? r->str : "bad reply") : s->redis->errstr);
        rc = r ? LJ_EREDIS : LJ_EUNAVAIL;
        if (r)
            freeReplyObject(r);
        return rc;
    }
    freeReplyObject(r);
    {
        const char *id = e->id;

        if ((rc = worker_ack(s, &id, 1)) != 0)
            return rc;
    }
    atomic_fetch_add(&s->w->stats.dead_lettered, 1);
    log_warn("deadletter", "dead-lettered stream=%s id=%s deliveries=%lld reason=\"%s\"",
             s->stream, e->id, e->deliveries, reason);
    return 0;
}
