/* batch.h -- turn stream entries into storable batches.
 *
 * Reads the entries of an XREADGROUP or XAUTOCLAIM reply. Each entry keeps
 * a copy of its fields (for the dead-letter stream); an entry whose fields
 * are nil (trimmed while pending) is 'gone'. Decoding the payload is a step
 * of its own (batch_decode), so the worker can count an attempt against an
 * entry before touching its data. A decoded entry whose payload reads as the
 * stream's kind is 'ok'; one that cannot be read carries a reason. The batch
 * copies what it keeps, so the reply may be freed afterwards.
 */
#ifndef LJ_CONSUMER_BATCH_H
#define LJ_CONSUMER_BATCH_H

#include <stddef.h>

#include <hiredis/hiredis.h>

#include "kinds.h"
#include "store.h"
#include "streams.h"

#define BATCH_ID_MAX 48

typedef struct batch_entry {
    char id[BATCH_ID_MAX];      /* stream entry ID */
    int ok;                     /* payload decoded (batch_decode) */
    int gone;                   /* fields were nil: entry trimmed */
    const char *reason;         /* why not ok (static string) */
    long long attempts;         /* earlier attempts that crashed a worker (attempts.h) */
    char **fields;              /* field, value, field, value, ... (owned) */
    size_t nfields;
    kind_value u;               /* when ok: the decoded payload (kinds.h) */
} batch_entry;

typedef struct batch {
    stream_kind kind;
    batch_entry *entries;
    size_t n;
} batch;

void batch_init(batch *b, stream_kind kind);
void batch_cleanup(batch *b);

/* Reads the entries of one stream from an XREADGROUP reply 'r'. A nil reply
 * (BLOCK timed out) gives an empty batch. 0, LJ_EPARSE when the reply does
 * not have the XREADGROUP shape, LJ_ENOMEM. */
int batch_from_reply(const redisReply *r, batch *out);

/* Reads an array of [id, fields] entries (as in XAUTOCLAIM's reply). */
int batch_from_entries(const redisReply *entries, batch *out);

/* Decodes the payload of 'e' (not gone, not yet decoded): sets 'ok', or a
 * 'reason'. batch_decode_all() decodes every entry of 'b'. */
void batch_decode(stream_kind kind, batch_entry *e);
void batch_decode_all(batch *b);


#endif
