#include "enrich.h"

#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "err.h"
#include "log.h"
#include "pg.h"
#include "record.h"
#include "streams.h"

typedef struct entry {
    char sn[REC_SN_MAX + 1];    /* "" = free slot */
    int64_t expires_ms;
    copyenc_owner owner;
} entry;

struct enrich_cache {
    entry *slots;
    size_t cap;                 /* power of two, >= 2 * max_entries */
    size_t used;
    size_t max_entries;
    int64_t ttl_ms;
    uint64_t hits;
    uint64_t misses;
};

static const char lookup_sql[] =
    "SELECT DISTINCT ON (u.device_sn) u.device_sn, u.id, u.customer_id, o.org_id"
    " FROM sys_user u"
    " LEFT JOIN sys_user_org o ON o.user_id = u.id AND o.is_deleted = 0"
    " WHERE u.is_deleted = 0 AND u.device_sn = ANY($1::varchar[])"
    " ORDER BY u.device_sn, u.id, o.org_id";

enrich_cache *enrich_new(size_t max_entries, int64_t ttl_ms)
{
    enrich_cache *c = calloc(1, sizeof(*c));
    size_t cap = 16;

    if (c == NULL)
        return NULL;
    if (max_entries < 2)
        max_entries = 2;
    while (cap < max_entries * 2)
        cap *= 2;
    if ((c->slots = calloc(cap, sizeof(entry))) == NULL) {
        free(c);
        return NULL;
    }
    c->cap = cap;
    c->max_entries = max_entries;
    c->ttl_ms = ttl_ms;
    return c;
}

void enrich_free(enrich_cache *c)
{
    if (c == NULL)
        return;
    free(c->slots);
    free(c);
}

/* The slot holding 'sn', or the free slot where it would go. */
static entry *slot_for(enrich_cache *c, const char *sn)
{
    size_t i = stream_hash(sn, strlen(sn)) & (c->cap - 1);

    while (c->slots[i].sn[0] && strcmp(c->slots[i].sn, sn) != 0)
        i = (i + 1) & (c->cap - 1);
    return &c->slots[i];
}

static void remember(enrich_cache *c, const char *sn, const copyenc_owner *o, int64_t now_ms)
{
    entry *e = slot_for(c, sn);

    if (!e->sn[0]) {
        snprintf(e->sn, sizeof(e->sn), "%s", sn);
        c->used++;
    }
    e->owner = *o;
    e->expires_ms = now_ms + c->ttl_ms;
}

/* Empties the cache when 'n' more devices might not fit: starting over is
 * simpler than tracking ages, and costs one query per batch for a while,
 * never a wrong answer. Done before a lookup, so no entry of the lookup in
 * progress is lost. */
static void make_room(enrich_cache *c, size_t n)
{
    if (c->used + n <= c->max_entries)
        return;
    memset(c->slots, 0, c->cap * sizeof(entry));
    c->used = 0;
}

/* Appends 'sn' as an element of a PostgreSQL array literal: "..." with
 * backslash before " and \. The literal travels as a parameter, never as SQL. */
static int append_array_elem(lj_buf *b, const char *sn)
{
    const char *p;

    if (lj_buf_append(b, b->len > 1 ? ",\"" : "\"", b->len > 1 ? 2 : 1) != 0)
        return LJ_ENOMEM;
    for (p = sn; *p; p++) {
        if ((*p == '"' || *p == '\\') && lj_buf_append(b, "\\", 1) != 0)
            return LJ_ENOMEM;
        if (lj_buf_append(b, p, 1) != 0)
            return LJ_ENOMEM;
    }
    return lj_buf_append(b, "\"", 1);
}

static int64_t id_at(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

/* Queries the devices of 'missing' (an array literal of 'nmissing' serials)
 * and caches the answers, unbound ones included. */
static int fetch(enrich_cache *c, PGconn *pg, const lj_buf *missing, const char *const *sns,
                 size_t n, int64_t now_ms)
{
    static const copyenc_owner nobody = {0, 0, 0};
    const char *params[1] = {missing->data};
    PGresult *r = pg_query_params(pg, lookup_sql, 1, params);
    size_t i;
    int row;

    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        log_error("enrich", "lookup failed: %s", PQerrorMessage(pg));
        int rc = pg_failure(pg, r);

        PQclear(r);
        return rc;
    }
    /* Everything asked for is first remembered as unbound, then bound rows
     * overwrite their entries. */
    for (i = 0; i < n; i++) {
        entry *e = slot_for(c, sns[i]);

        if (!e->sn[0] || e->expires_ms <= now_ms)
            remember(c, sns[i], &nobody, now_ms);
    }
    for (row = 0; row < PQntuples(r); row++) {
        copyenc_owner o = {id_at(r, row, 1), id_at(r, row, 2), id_at(r, row, 3)};

        remember(c, PQgetvalue(r, row, 0), &o, now_ms);
    }
    PQclear(r);
    return 0;
}

int enrich_lookup(enrich_cache *c, PGconn *pg, const char *const *sns, size_t n,
                  int64_t now_ms, copyenc_owner *owners)
{
    lj_buf missing;
    size_t i;
    size_t nmissing = 0;
    int rc = 0;

    if (n > c->max_entries / 2) {
        /* Keep one call within the room make_room() guarantees. */
        size_t half = c->max_entries / 2;

        if ((rc = enrich_lookup(c, pg, sns, half, now_ms, owners)) != 0)
            return rc;
        return enrich_lookup(c, pg, sns + half, n - half, now_ms, owners + half);
    }
    make_room(c, n);
    lj_buf_init(&missing);
    if (lj_buf_append(&missing, "{", 1) != 0)
        return LJ_ENOMEM;
    for (i = 0; i < n; i++) {
        entry *e = slot_for(c, sns[i]);

        if (e->sn[0] && e->expires_ms > now_ms)
            continue;
        if (append_array_elem(&missing, sns[i]) != 0) {
            rc = LJ_ENOMEM;
            goto out;
        }
        nmissing++;
    }
    if (lj_buf_append(&missing, "}", 1) != 0) {
        rc = LJ_ENOMEM;
        goto out;
    }
    if (nmissing > 0 && (rc = fetch(c, pg, &missing, sns, n, now_ms)) != 0)
        goto out;
    c->misses += nmissing;
    c->hits += n - nmissing;
    for (i = 0; i < n; i++)
        owners[i] = slot_for(c, sns[i])->owner;
out:
    lj_buf_cleanup(&missing);
    return rc;
}

void enrich_counts(const enrich_cache *c, uint64_t *hits, uint64_t *misses)
{
    *hits = c->hits;
    *misses = c->misses;
}
