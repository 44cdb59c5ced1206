#include "upkeep.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attempts.h"
#include "claim.h"
#include "err.h"
#include "kinds.h"
#include "log.h"
#include "pg.h"
#include "rds.h"
#include "retention.h"

#define PARTITION_LOCK "7262022"
#define PARTITION_EVERY_MS (3600 * 1000)

/* The oldest pending ID of 'group' into 'out'. 0, or -1. */
static int oldest_pending(session *s, const char *group, char *out, size_t outlen)
{
    const char *argv[] = {"XPENDING", s->stream, group};
    redisReply *r = session_command(s, 3, argv);
    int rc = -1;

    if (r && r->type == REDIS_REPLY_ARRAY && r->elements >= 2 &&
        r->element[1]->type == REDIS_REPLY_STRING && r->element[1]->len < outlen) {
        memcpy(out, r->element[1]->str, r->element[1]->len + 1);
        rc = 0;
    }
    if (r)
        freeReplyObject(r);
    return rc;
}

/* Records our group's figures; returns in 'minid' the lowest ID any group
 * still needs ("" when it cannot be known: then nothing is trimmed). */
static void read_groups(session *s, char *minid, size_t len)
{
    const char *argv[] = {"XINFO", "GROUPS", s->stream};
    redisReply *r = session_command(s, 3, argv);
    size_t i;

    minid[0] = '\0';
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements == 0)
        goto out;
    for (i = 0; i < r->elements; i++) {
        const redisReply *g = r->element[i];
        const redisReply *name = rds_map_get(g, "name");
        const redisReply *pending = rds_map_get(g, "pending");
        const redisReply *last = rds_map_get(g, "last-delivered-id");
        const redisReply *lag = rds_map_get(g, "lag");
        char need[BATCH_ID_MAX];

        if (!name || !pending || !last || last->type != REDIS_REPLY_STRING ||
            last->len >= sizeof(need)) {
            minid[0] = '\0';
            goto out;   /* unknown shape: trim nothing */
        }
        if (strcmp(name->str, s->group) == 0) {
            atomic_store(&s->w->stats.pending, pending->integer);
            atomic_store(&s->w->stats.lag,
                         lag && lag->type == REDIS_REPLY_INTEGER ? lag->integer : -1);
        }
        memcpy(need, last->str, last->len + 1);
        if (pending->integer > 0 && oldest_pending(s, name->str, need, sizeof(need)) != 0) {
            minid[0] = '\0';
            goto out;
        }
        if (i == 0 || stream_id_cmp(need, minid) < 0)
            snprintf(minid, len, "%s", need);
    }
out:
    if (r)
        freeReplyObject(r);
}

static void trim(session *s)
{
    char minid[BATCH_ID_MAX];
    const char *argv[] = {"XTRIM", s->stream, "MINID", minid};
    const char *xlen[] = {"XLEN", s->stream};
    redisReply *r;

    read_groups(s, minid, sizeof(minid));
    if (minid[0] && strcmp(minid, "0-0") != 0) {
        r = session_command(s, 4, argv);
        if (r && r->type == REDIS_REPLY_INTEGER && r->integer > 0)
            log_debug("upkeep", "trimmed stream=%s below=%s n=%lld", s->stream, minid,
                      r->integer);
        if (r)
            freeReplyObject(r);
        attempts_prune(s, minid);
    }
    if ((r = session_command(s, 2, xlen)) != NULL) {
        if (r->type == REDIS_REPLY_INTEGER)
            atomic_store(&s->w->stats.length, r->integer);
        freeReplyObject(r);
    }
}

/* Runs 'sql' and returns its first value as an integer (-1 on failure). */
static long long query_int(PGconn *pg, const char *sql)
{
    PGresult *r = pg_query(pg, sql);
    long long v = -1;

    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && !PQgetisnull(r, 0, 0))
        v = strcmp(PQgetvalue(r, 0, 0), "t") == 0 ? 1 : strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    else
        log_warn("upkeep", "%s: %s", sql, PQerrorMessage(pg));
    PQclear(r);
    return v;
}

/* Consecutive months after the current UTC one whose partition exists (the
 * names ensure_health_partitions() gives them), up to 12; -1 on failure. */
#define MONTHS_AHEAD_SQL                                                              \
    "SELECT coalesce(min(i) - 1, 12) FROM generate_series(1, 12) AS i"              \
    " WHERE to_regclass('t_user_health_data_' || to_char(date_trunc('month',"       \
    " now() AT TIME ZONE 'UTC') + make_interval(months => i), 'YYYYMM')) IS NULL"

static void ensure_partitions(session *s)
{
    long long created;

    /* One statement, one transaction: the lock is the transaction's (a
     * transaction pooler keeps no session lock for us); -1: another
     * process is at it, count what exists all the same. */
    created = query_int(s->pg, "SELECT CASE WHEN pg_try_advisory_xact_lock(" PARTITION_LOCK ")"
                               " THEN ensure_health_partitions(3) ELSE -1 END");
    if (created > 0)
        log_info("upkeep", "created %lld monthly partitions", created);
    atomic_store(&s->w->stats.partitions_ahead, query_int(s->pg, MONTHS_AHEAD_SQL));
}

/* --retention-months: the old months go (before the months ahead are
 * counted, so a reader of that gauge knows retention has run). */
static void drop_old_partitions(session *s)
{
    const lj_config *cfg = s->w->cfg;
    int dropped = 0;

    if (cfg->retention_months <= 0)
        return;
    if (retention_run(s->pg, cfg->retention_months, cfg->retention_archive_dir, &dropped) != 0)
        atomic_fetch_add(&s->w->stats.retention_failures, 1);
    atomic_fetch_add(&s->w->stats.partitions_dropped, (unsigned long long)dropped);
}

void upkeep_run(session *s)
{
    if (s->redis == NULL)
        return;
    claim_dead_local(s);
    if (s->pg && claim_idle(s) != 0)
        log_warn("upkeep", "claiming idle entries failed stream=%s", s->stream);
    if (s->redis && !rconn_broken(s->redis))
        trim(s);
    if (kind_get(s->kind)->partitioned && s->pg && session_clock_ms() >= s->next_partitions_ms) {
        drop_old_partitions(s);
        ensure_partitions(s);
        s->next_partitions_ms = session_clock_ms() + PARTITION_EVERY_MS;
    }
}
