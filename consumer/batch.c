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

static const redisReply *find_field(const redisReply *fields, const char *name)
{
    size_t i;

    for (i = 0; i + 1 < fields->elements; i += 2) {
        const redisReply *f = fields->element[i];

        if (f->type == REDIS_REPLY_STRING && strcmp(f->str, name) == 0)
            return fields->element[i + 1];
    }
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

static int decode(stream_kind kind, const redisReply *fields, batch_entry *out)
{
    const redisReply *payload = find_field(fields, "payload");
    const redisReply *batch_id;

    if (payload == NULL || payload->type != REDIS_REPLY_STRING) {
        out->reason = "entry has no payload";
        return 0;
    }
    if (kind == STREAM_HEALTH) {
        rec_batch_init(&out->u.health);
        if (rec_batch_from_json(payload->str, payload->len, &out->u.health) != 0 ||
            out->u.health.n == 0) {
            rec_batch_cleanup(&out->u.health);
            out->reason = "payload is not a normalised record list";
            return 0;
        }
        batch_id = find_field(fields, "batch_id");
        if (batch_id && batch_id->type == REDIS_REPLY_STRING &&
            batch_id->len <= REC_BATCH_ID_MAX)
            memcpy(out->u.health.batch_id, batch_id->str, batch_id->len + 1);
    } else if (kind == STREAM_DEVICE) {
        if (rep_device_from_json(payload->str, payload->len, &out->u.device) != 0) {
            out->reason = "payload is not a normalised device report";
            return 0;
        }
    } else if (rep_event_from_json(payload->str, payload->len, &out->u.event) != 0) {
        out->reason = "payload is not a normalised event";
        return 0;
    }
    out->ok = 1;
    return 0;
}

/* Reads one [id, [field, value, ...]] entry. */
static int read_entry(stream_kind kind, const redisReply *e, batch_entry *out)
{
    const redisReply *fields;
    int rc;

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
    if ((rc = copy_fields(fields, out)) != 0)
        return rc;
    return decode(kind, fields, out);
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
        int rc = read_entry(out->kind, entries->element[i], &out->entries[i]);

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
