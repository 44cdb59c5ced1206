#include "deadletter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "err.h"
#include "log.h"
#include "pg.h"
#include "settle.h"
#include "streams.h"

#define DEAD_HEAD 8     /* the four STREAM_DEAD_* field/value pairs */

static const char insert_sql[] =
    "INSERT INTO t_dead_letter (stream, entry_id, reason, attempts, consumer, fields)"
    " VALUES ($1, $2, $3, $4::integer, $5, $6::jsonb)"
    " ON CONFLICT (stream, entry_id) DO NOTHING";

/* Nonzero when 's' is UTF-8 that PostgreSQL accepts: no overlong forms,
 * no surrogates, nothing above U+10FFFF. */
static int utf8_ok(const unsigned char *s)
{
    while (*s) {
        unsigned char c = *s;
        int n = c < 0x80 ? 0 : c >= 0xC2 && c <= 0xDF ? 1 : (c & 0xF0) == 0xE0 ? 2
              : c >= 0xF0 && c <= 0xF4 ? 3 : -1;

        if (n < 0)
            return 0;
        if ((c == 0xE0 && s[1] < 0xA0) || (c == 0xED && s[1] > 0x9F) ||
            (c == 0xF0 && s[1] < 0x90) || (c == 0xF4 && s[1] > 0x8F))
            return 0;
        for (s++; n > 0; n--, s++)
            if ((*s & 0xC0) != 0x80)
                return 0;
    }
    return 1;
}

/* The entry's fields as a JSON object; a value that is not UTF-8 is kept
 * as {"hex": "..."} (every value, with 'all_hex'). NULL when out of memory. */
static char *fields_json(const batch_entry *e, int all_hex)
{
    cJSON *o = cJSON_CreateObject();
    char *out = NULL;
    size_t i;

    for (i = 0; o && i + 1 < e->nfields; i += 2) {
        const char *v = e->fields[i + 1];
        cJSON *val;

        if (!utf8_ok((const unsigned char *)e->fields[i]))
            continue;   /* a field name we cannot key by: the Redis copy keeps it */
        if (!all_hex && utf8_ok((const unsigned char *)v)) {
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

static int insert_row(session *s, const batch_entry *e, const char *reason, int all_hex)
{
    char attempts[24];
    const char *params[6];
    char *fields = fields_json(e, all_hex);
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

/* The row, with the values as text; should PostgreSQL refuse them (the
 * entry was not written by our producer), as hex. */
static int keep_in_pg(session *s, const batch_entry *e, const char *reason)
{
    int rc = insert_row(s, e, reason, 0);

    return rc == LJ_EPOISON ? insert_row(s, e, reason, 1) : rc;
}

int dlq_move(session *s, const batch_entry *e, const char *reason)
{
    char attempts[24];
    const char **f;
    size_t i;
    int rc;

    if (s->pg == NULL)
        return LJ_EUNAVAIL;
    if ((rc = keep_in_pg(s, e, reason)) != 0) {
        log_error("deadletter", "keeping dead letter stream=%s id=%s in PostgreSQL failed",
                  s->stream, e->id);
        return rc;
    }
    if ((f = malloc((DEAD_HEAD + e->nfields) * sizeof(*f))) == NULL)
        return LJ_ENOMEM;
    snprintf(attempts, sizeof(attempts), "%lld", e->attempts);
    f[0] = STREAM_DEAD_REASON;
    f[1] = reason;
    f[2] = STREAM_DEAD_ID;
    f[3] = e->id;
    f[4] = STREAM_DEAD_DELIVERIES;
    f[5] = attempts;
    f[6] = STREAM_DEAD_CONSUMER;
    f[7] = s->w->name;
    for (i = 0; i < e->nfields; i++)
        f[DEAD_HEAD + i] = e->fields[i];
    rc = settle_dead(s, e->id, f, DEAD_HEAD + e->nfields);
    free(f);
    if (rc != 0)
        return rc;
    atomic_fetch_add(&s->w->stats.dead_lettered, 1);
    log_warn("deadletter", "dead-lettered stream=%s id=%s attempts=%lld reason=\"%s\"",
             s->stream, e->id, e->attempts, reason);
    return 0;
}
