/* store.h -- store a batch of normalised health records in one transaction.
 *
 * The one piece of code that writes health rows, called by the consumer
 * (upload_method "stream_v2") and by the producer's legacy path
 * ("optimized"):
 *
 *     owners of the batch's devices        -- enrich_lookup(), cached
 *     partitions of the months it touches  -- part_ensure(), cached
 *     BEGIN
 *     SAVEPOINT; COPY t_user_health_data    -- every record, with its owner
 *     (a row already stored or refused: back to the savepoint, then
 *      COPY into a temp staging table and INSERT ... SELECT
 *      ON CONFLICT (device_sn, ts) DO NOTHING, which names the rows skipped)
 *     SELECT the enabled t_alert_rule rows  -- matched here (alertrule.h)
 *     INSERT INTO t_alert_info ... unnest() -- by the new rows only
 *     COMMIT
 *
 * so a redelivered batch, or the same reading sent twice on either path,
 * never makes a second row (nor a second alert): it is counted in
 * 'duplicates' instead. Blocking; one PGconn per thread.
 */
#ifndef LJ_COMMON_STORE_H
#define LJ_COMMON_STORE_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "enrich.h"
#include "record.h"
#include "report.h"

/* The records of one upload (one stream entry) and where they came from. */
typedef struct store_item {
    const rec_health *recs;
    size_t n;
    const char *stream_id;  /* entry ID, or NULL on the legacy path */
    int shard;              /* the entry's stream shard, or -1 (stored NULL) */
    const char *batch_id;   /* the upload's batchId, or NULL */
} store_item;

/* An alert raised by a batch, for notifiers (alert_stream) after COMMIT. */
typedef struct store_alert {
    int64_t id;
    int64_t user_id;                /* 0 when the device is unbound */
    char device_sn[REC_SN_MAX + 1];
    char alert_type[33];            /* the metric, e.g. "heart_rate" */
    char level[17];                 /* minor, major, critical */
    char time[32];                  /* reading time, ISO 8601 UTC */
    double value;
} store_alert;

/* What a stored batch did. Owns 'alerts': release with store_stats_cleanup(). */
typedef struct store_stats {
    size_t inserted;
    size_t entries_new;             /* stream entries with at least one new row */
    size_t duplicates;
    size_t unbound;                 /* records of devices bound to nobody */
    store_alert *alerts;
    size_t nalerts;
} store_stats;

void store_stats_cleanup(store_stats *st);

/* An alert as the arguments of one XADD to the alert stream (for notifiers):
 *   XADD <stream> MAXLEN ~ <maxlen> * alert_id <id> device_sn <sn> user_id <id>
 *                   alert_type <t> value <v> level <l> time <iso>
 * The stream is bounded (t_alert_info keeps every alert). 'argv' points
 * into 'stream', 'a' and 't' (which holds the numbers' text). */
#define STORE_ALERT_ARGC 20

typedef struct store_alert_text {
    char id[24];
    char user[24];
    char value[32];
    char maxlen[16];
} store_alert_text;

void store_alert_argv(const char *stream, int maxlen, const store_alert *a, store_alert_text *t,
                      const char *argv[STORE_ALERT_ARGC]);

/* upload_method of rows back-filled by scripts/import: their alerts are
 * recorded with status IMPORTED instead of NEW. */
#define STORE_UPLOAD_IMPORT "import"

/* Attaches the partition cache (partition.h); no session state is made
 * (the staging table lives in the transaction that uses it, so a
 * transaction pooler may stand between us and PostgreSQL). Call once
 * after every connect.
 * 0, or an error as pg_exec(). */
int store_prepare(PGconn *pg);

/* Stores the records of 'n' items in one transaction, rows tagged with
 * 'upload_method' and their owners from 'cache' (NULL: no enrichment), after
 * creating the partitions of months that have none (call it with no
 * transaction open). On 0
 * the transaction is committed and 'st' (zeroed first) says what it did. On
 * error nothing is stored (rolled back): LJ_EUNAVAIL when the connection is
 * lost, LJ_EPOISON when the server refused the data, LJ_EPG for a transient
 * failure, LJ_ENOMEM. */
int store_health_batch(PGconn *pg, enrich_cache *cache, const store_item *items, size_t n,
                       const char *upload_method, store_stats *st);

/* As store_health_batch(); on 0 also sets each[i] (room for 'n') to the
 * rows of items[i] that were new (the rest of its records were duplicates:
 * already stored, or repeating an earlier row of the call: such a repeat
 * is not sent at all, so the first upload holding a reading is the one it
 * counts as new for). */
int store_health_each(PGconn *pg, enrich_cache *cache, const store_item *items, size_t n,
                      const char *upload_method, store_stats *st, size_t *each);

/* Stores device status reports in one transaction: each appended to the
 * history (unique by stream and entry ID: a redelivered report adds
 * nothing, the same ID in another stream is another report) and, when new,
 * upserted as the device's latest state unless a later report is already
 * there. 'stream_ids'[i] is the entry of reps[i] in 'stream'. Errors as
 * store_health_batch(). 'each' (NULL, or room for 'n'): on 0, each[i] is 1
 * when reps[i] was new, else 0; so for store_event_batch(). */
int store_device_batch(PGconn *pg, enrich_cache *cache, const char *stream,
                       const rep_device *reps, const char *const *stream_ids, size_t n,
                       store_stats *st, size_t *each);

/* Stores events in one transaction (unique device, type and time), raising
 * an alert for each new event that an enabled event rule matches (SOS,
 * FALL_DOWN). Errors as store_health_batch(). */
int store_event_batch(PGconn *pg, enrich_cache *cache, const rep_event *evs,
                      const char *const *stream_ids, size_t n, store_stats *st, size_t *each);

#endif
