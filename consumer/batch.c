#include "batch.h"

#include <stdlib.h>
#include <string.h>

#include "err.h"

void batch_init(batch *b)
{
    b->entries = NULL;
    b->n = 0;
}

void batch_cleanup(batch *b)
{
    size_t i;

    for (i = 0; i < b->n; i++)
        rec_batch_cleanup(&b->entries[i].recs);
    free(b->entries);
    batch_init(b);
}

/* Finds field 'name' in a flat [field, value, ...] array. */
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

/* Reads one [id, [field, value, ...]] entry. */
static int read_entry(const redisReply *e, batch_entry *out)
{
    const redisReply *fields;
    const redisReply *payload;
    const redisReply *batch_id;

    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
        e->element[0]->type != REDIS_REPLY_STRING || e->element[0]->len >= BATCH_ID_MAX)
        return LJ_EPARSE;
    memcpy(out->id, e->element[0]->str, e->element[0]->len + 1);
    rec_batch_init(&out->recs);
    fields = e->element[1];
    if (fields->type == REDIS_REPLY_NIL) {
        out->gone = 1;
        out->reason = "entry was trimmed before it was stored";
        return 0;
    }
    if (fields->type != REDIS_REPLY_ARRAY)
        return LJ_EPARSE;
    payload = find_field(fields, "payload");
    if (payload == NULL || payload->type != REDIS_REPLY_STRING) {
        out->reason = "entry has no payload";
        return 0;
    }
    if (rec_batch_from_json(payload->str, payload->len, &out->recs) != 0) {
        out->reason = "payload is not a normalised record list";
        return 0;
    }
    batch_id = find_field(fields, "batch_id");
    if (batch_id && batch_id->type == REDIS_REPLY_STRING && batch_id->len <= REC_BATCH_ID_MAX)
        memcpy(out->recs.batch_id, batch_id->str, batch_id->len + 1);
    out->ok = 1;
    return 0;
}

int batch_from_reply(const redisReply *r, batch *out)
{
    const redisReply *entries;
    size_t i;

    if (r->type == REDIS_REPLY_NIL)
        return 0;
    /* [[stream, [entry, ...]]] */
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 1 ||
        r->element[0]->type != REDIS_REPLY_ARRAY || r->element[0]->elements != 2 ||
        r->element[0]->element[1]->type != REDIS_REPLY_ARRAY)
        return LJ_EPARSE;
    entries = r->element[0]->element[1];
    if (entries->elements == 0)
        return 0;
    if ((out->entries = calloc(entries->elements, sizeof(*out->entries))) == NULL)
        return LJ_ENOMEM;
    for (i = 0; i < entries->elements; i++) {
        int rc = read_entry(entries->element[i], &out->entries[out->n]);

        if (rc != 0) {
            batch_cleanup(out);
            return rc;
        }
        out->n++;
    }
    return 0;
}

size_t batch_store_items(const batch *b, store_item *items)
{
    size_t i;
    size_t n = 0;

    for (i = 0; i < b->n; i++) {
        const batch_entry *e = &b->entries[i];

        if (!e->ok)
            continue;
        items[n].recs = e->recs.recs;
        items[n].n = e->recs.n;
        items[n].stream_id = e->id;
        items[n].batch_id = e->recs.batch_id[0] ? e->recs.batch_id : NULL;
        n++;
    }
    return n;
}
