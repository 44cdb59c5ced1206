/* batch.h -- turn an XREADGROUP reply into storable health batches.
 *
 * An entry whose payload cannot be read is kept in the batch, marked not
 * 'ok' with a reason, so the worker can acknowledge or dead-letter it by ID
 * without storing it. An entry whose fields are nil (trimmed while pending)
 * is marked 'gone'. Pure functions over the reply; the batch copies what it
 * keeps, so the reply may be freed afterwards.
 */
#ifndef LJ_CONSUMER_BATCH_H
#define LJ_CONSUMER_BATCH_H

#include <stddef.h>

#include <hiredis/hiredis.h>

#include "record.h"
#include "store.h"

#define BATCH_ID_MAX 48

typedef struct batch_entry {
    char id[BATCH_ID_MAX];      /* stream entry ID */
    int ok;                     /* payload read into 'recs' */
    int gone;                   /* fields were nil: entry trimmed */
    const char *reason;         /* why not ok (static string) */
    rec_batch recs;
} batch_entry;

typedef struct batch {
    batch_entry *entries;
    size_t n;
} batch;

void batch_init(batch *b);
void batch_cleanup(batch *b);

/* Reads the entries of one stream from an XREADGROUP reply 'r' into 'out'.
 * A nil reply (BLOCK timed out) gives an empty batch. Returns 0, LJ_EPARSE
 * when the reply does not have the XREADGROUP shape, LJ_ENOMEM. */
int batch_from_reply(const redisReply *r, batch *out);

/* Points 'items' (room for b->n) at the ok entries; returns how many. */
size_t batch_store_items(const batch *b, store_item *items);

#endif
