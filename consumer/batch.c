#include "batch.h"

#include <stdlib.h>
#include <string.h>

#include "err.h"

void batch_init(batch *b, stream_kind kind)
{
    b->kind = kind;
    b->entries = NULL;
    b->n = 0;
}

static void entry_cleanup(stream_kind kind, batch_entry *e)
{
    size_t i;

    for (i = 0; i < e->nfields; i++)
        free(e->fields[i]);
    free(e->fields);
    if (e->ok)
        kind_get(kind)->cleanup(&e->u);
}

void batch_cleanup(batch *b)
{
    size_t i;

    for (i = 0; i < b->n; i++)
        entry_cleanup(b->kind, &b->entries[i]);
    free(b->entries);
    batch_init(b, b->kind);
}

/* The value of field 'name' among the entry's copied fields, or NULL. */
static const char *find_field(const batch_entry *e, const char *name)
{
    size_t i;

    for (i = 0; i + 1 < e->nfields; i += 2)
        if (strcmp(e->fields[i], name) == 0)
            return e->fields[i + 1];
    return NULL;
}

/* Copies the field/value strings of an entry (binary-safe up to the first
 * NUL, which our producers never write). */
static int copy_fields(const redisReply *fields, batch_entry *out)
{
    size_t i;

    if ((out->fields = calloc(fields->elements ? fields->elements : 1, sizeof(char *))) == NULL)
        return LJ_ENOMEM;
    for (i = 0; i < fields->elements; i++) {
        const redisReply *f = fields->element[i];

        if (f->type != REDIS_REPLY_STRING)
            return LJ_EPARSE;
        if ((out->fields[i] = strndup(f->str, f->len)) == NULL)
            return LJ_ENOMEM;
        out->nfields = i + 1;
    }
    return 0;
}

#ifdef LJ_TEST_HOOKS
/* Test builds only: a health record of device $LJ_TEST_CRASH_SN crashes the
 * worker while it decodes, as a bug triggered by one entry's data would. */
static void crash_hook(stream_kind kind, const kind_value *v)
{
    const char *sn = getenv("LJ_TEST_CRASH_SN");
    size_t i;

    for (i = 0; kind == STREAM_HEALTH && sn && *sn && i < v->health.n; i++)
        if (strcmp(v->health.recs[i].device_sn, sn) == 0)
            abort();
}
#else
#define crash_hook(kind, v) ((void)0)
#endif

void batch_decode(stream_kind kind, batch_entry *e)
{
    const kind_ops *k = kind_get(kind);
    const char *payload;

    if (e->gone || e->ok)
        return;
    if ((payload = find_field(e, "payload")) == NULL) {
        e->reason = "entry has no payload";
        return;
    }
    if (k->decode(payload, strlen(payload), find_field(e, "batch_id"), &e->u) != 0) {
        e->reason = k->undecodable;
        return;
    }
    crash_hook(kind, &e->u);
    e->ok = 1;
    e->reason = NULL;
}

void batch_decode_all(batch *b)
{
    size_t i;

    for (i = 0; i < b->n; i++)
        batch_decode(b->kind, &b->entries[i]);
}

/* Reads one [id, [field, value, ...]] entry. */
static int read_entry(const redisReply *e, batch_entry *out)
{
    const redisReply *fields;

    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
        e->element[0]->type != REDIS_REPLY_STRING || e->element[0]->len >= BATCH_ID_MAX)
        return LJ_EPARSE;
    memcpy(out->id, e->element[0]->str, e->element[0]->len + 1);
    fields = e->element[1];
    if (fields->type == REDIS_REPLY_NIL) {
        out->gone = 1;
        out->reason = "entry was trimmed before it was stored";
        return 0;
    }
    if (fields->type != REDIS_REPLY_ARRAY)
        return LJ_EPARSE;
    out->reason = "entry not decoded";
    return copy_fields(fields, out);
}

int batch_from_entries(const redisReply *entries, batch *out)
{
    size_t i;

    if (entries->type != REDIS_REPLY_ARRAY)
        return LJ_EPARSE;
    if (entries->elements == 0)
        return 0;
    if ((out->entries = calloc(entries->elements, sizeof(*out->entries))) == NULL)
        return LJ_ENOMEM;
    for (i = 0; i < entries->elements; i++) {
        int rc = read_entry(entries->element[i], &out->entries[i]);

        out->n = i + 1;     /* cleaned up whatever happened */
        if (rc != 0) {
            batch_cleanup(out);
            return rc;
        }
    }
    return 0;
}

int batch_from_reply(const redisReply *r, batch *out)
{
    if (r->type == REDIS_REPLY_NIL)
        return 0;
    /* [[stream, [entry, ...]]] */
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 1 ||
        r->element[0]->type != REDIS_REPLY_ARRAY || r->element[0]->elements != 2)
        return LJ_EPARSE;
    return batch_from_entries(r->element[0]->element[1], out);
}
