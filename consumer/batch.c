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
    if (!e->ok)
        return;
    if (kind == STREAM_HEALTH)
        rec_batch_cleanup(&e->u.health);
    else if (kind == STREAM_DEVICE)
        rep_device_cleanup(&e->u.device);
    else
        rep_event_cleanup(&e->u.event);
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
/* Test builds only: a record of device $LJ_TEST_CRASH_SN crashes the worker
 * while it decodes, as a bug triggered by one entry's data would. */
static void crash_hook(const rec_batch *b)
{
    const char *sn = getenv("LJ_TEST_CRASH_SN");
    size_t i;

    for (i = 0; sn && *sn && i < b->n; i++)
        if (strcmp(b->recs[i].device_sn, sn) == 0)
            abort();
}
#else
#define crash_hook(b) ((void)0)
#endif

void batch_decode(stream_kind kind, batch_entry *e)
{
    const char *payload;
    const char *batch_id;

    if (e->gone || e->ok)
        return;
    if ((payload = find_field(e, "payload")) == NULL) {
        e->reason = "entry has no payload";
        return;
    }
    if (kind == STREAM_HEALTH) {
        rec_batch_init(&e->u.health);
        if (rec_batch_from_json(payload, strlen(payload), &e->u.health) != 0 ||
            e->u.health.n == 0) {
            rec_batch_cleanup(&e->u.health);
            e->reason = "payload is not a normalised record list";
            return;
        }
        crash_hook(&e->u.health);
        batch_id = find_field(e, "batch_id");
        if (batch_id && strlen(batch_id) <= REC_BATCH_ID_MAX)
            memcpy(e->u.health.batch_id, batch_id, strlen(batch_id) + 1);
    } else if (kind == STREAM_DEVICE) {
        if (rep_device_from_json(payload, strlen(payload), &e->u.device) != 0) {
            e->reason = "payload is not a normalised device report";
            return;
        }
    } else if (rep_event_from_json(payload, strlen(payload), &e->u.event) != 0) {
        e->reason = "payload is not a normalised event";
        return;
    }
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

size_t batch_health_items(batch_entry *const *e, size_t n, store_item *items)
{
    size_t i;
    size_t k = 0;

    for (i = 0; i < n; i++) {
        if (!e[i]->ok)
            continue;
        items[k].recs = e[i]->u.health.recs;
        items[k].n = e[i]->u.health.n;
        items[k].stream_id = e[i]->id;
        items[k].batch_id = e[i]->u.health.batch_id[0] ? e[i]->u.health.batch_id : NULL;
        k++;
    }
    return k;
}
