#include "deadletter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "err.h"
#include "log.h"
#include "pg.h"
#include "settle.h"

#define DEAD_HEAD 14    /* XADD <key> MAXLEN ~ <n> * + four field/value pairs */

static const char insert_sql[] =
    "INSERT INTO t_dead_letter (stream, entry_id, reason, attempts, consumer, fields)"
    " VALUES ($1, $2, $3, $4::integer, $5, $6::jsonb)"
    " ON CONFLICT (stream, entry_id) DO NOTHING";

/* Nonzero when 's' is valid UTF-8 (jsonb refuses anything else). */
static int utf8_ok(const unsigned char *s)
{
    while (*s) {
        int n = *s < 0x80 ? 0 : (*s & 0xE0) == 0xC0 ? 1 : (*s & 0xF0) == 0xE0 ? 2
              : (*s & 0xF8) == 0xF0 ? 3 : -1;

        if (n < 0 || (n == 1 && *s < 0xC2))
            return 0;
        for (s++; n > 0; n--, s++)
            if ((*s & 0xC0) != 0x80)
                return 0;
    }
    return 1;
}

/* The entry's fields as a JSON object; a value that is not UTF-8 is kept
 * as {"hex": "..."}. NULL when out of memory. */
static char *fields_json(const batch_entry *e)
{
    cJSON *o = cJSON_CreateObject();
    char *out = NULL;
    size_t i;

    for (i = 0; o && i + 1 < e->nfields; i += 2) {
        const char *v = e->fields[i + 1];
        cJSON *val;

        if (!utf8_ok((const unsigned char *)e->fields[i]))
            continue;   /* a field name we cannot key by: the Redis copy keeps it */
        if (utf8_ok((const unsigned char *)v)) {
            val = cJSON_CreateString(v);
        } else {
            size_t len = strlen(v);
            char *hex = malloc(2 * len + 1);
            size_t j;

            for (j = 0; hex && j < len; j++)
                snprintf(hex + 2 * j, 3, "%02x", (unsigned char)v[j]);
            val = hex ? cJSON_CreateObject() : NULL;
            if (val && hex)
                cJSON_AddStringToObject(val, "hex", hex);
            free(hex);
        }
        if (val == NULL)
            goto out;
        cJSON_AddItemToObject(o, e->fields[i], val);
    }
    if (o)
        out = cJSON_PrintUnformatted(o);
out:
    cJSON_Delete(o);
    return out;
}

static int keep_in_pg(session *s, const batch_entry *e, const char *reason)
{
    char attempts[24];
    const char *params[6];
    char *fields = fields_json(e);
    int rc;

    if (fields == NULL)
        return LJ_ENOMEM;
    snprintf(attempts, sizeof(attempts), "%lld", e->attempts);
    params[0] = s->stream;
    params[1] = e->id;
    params[2] = reason;
    params[3] = attempts;
    params[4] = s->w->name;
    params[5] = fields;
    rc = pg_exec_params(s->pg, insert_sql, 6, params);
    free(fields);
    return rc;
}

int dlq_move(session *s, const batch_entry *e, const char *reason)
{
    settle_counts counts = {0, 0, 1, 0};
    char attempts[24];
    char maxlen[24];
    const char **argv;
    rds_cmd xadd;
    const char *id = e->id;
    size_t i;
    int rc;

    if (s->pg == NULL)
        return LJ_EUNAVAIL;
    if ((rc = keep_in_pg(s, e, reason)) != 0) {
        log_error("deadletter", "keeping dead letter stream=%s id=%s in PostgreSQL failed",
                  s->stream, e->id);
        return rc;
    }
    if ((argv = malloc((DEAD_HEAD + e->nfields) * sizeof(*argv))) == NULL)
        return LJ_ENOMEM;
    snprintf(attempts, sizeof(attempts), "%lld", e->attempts);
    snprintf(maxlen, sizeof(maxlen), "%d", s->w->cfg->dead_stream_maxlen);
    argv[0] = "XADD";
    argv[1] = s->dead_stream;
    argv[2] = "MAXLEN";
    argv[3] = "~";
    argv[4] = maxlen;
    argv[5] = "*";
    argv[6] = STREAM_DEAD_REASON;
    argv[7] = reason;
    argv[8] = STREAM_DEAD_ID;
    argv[9] = e->id;
    argv[10] = STREAM_DEAD_DELIVERIES;
    argv[11] = attempts;
    argv[12] = STREAM_DEAD_CONSUMER;
    argv[13] = s->w->name;
    for (i = 0; i < e->nfields; i++)
        argv[DEAD_HEAD + i] = e->fields[i];
    xadd.argc = (int)(DEAD_HEAD + e->nfields);
    xadd.argv = argv;
    rc = settle_entries(s, &id, 1, &counts, 1, &xadd);
    free(argv);
    if (rc != 0)
        return rc;
    atomic_fetch_add(&s->w->stats.dead_lettered, 1);
    log_warn("deadletter", "dead-lettered stream=%s id=%s attempts=%lld reason=\"%s\"",
             s->stream, e->id, e->attempts, reason);
    return 0;
}
