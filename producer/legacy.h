/* legacy.h -- the legacy path: direct, synchronous PostgreSQL writes
 * (SPEC §4), with the same validation, enrichment and alerts as the
 * consumers (common/store.c), health rows tagged "optimized".
 *
 * Group commit. legacy_start() runs --legacy-writers threads, each with its
 * own PostgreSQL connection (made on demand, remade after a failure) and
 * owner cache; the ops queries keep to pool.c. Uploads queued from any loop
 * thread wait in one queue of at most --legacy-queue uploads (full: the
 * call fails at once). A writer takes the oldest and waits up to
 * --legacy-group-ms after it was queued for more: the group closes at
 * --legacy-group-uploads uploads or --legacy-group-records records. The
 * group's uploads (all of one kind) are stored in ONE transaction
 * (store_health_each, store_device_batch, store_event_batch). When
 * PostgreSQL refuses the data (LJ_EPOISON) the group is split in halves
 * until the refused upload is alone: it alone gets LJ_EPOISON, the others
 * commit. One writer gathers at a time; the others write meanwhile.
 *
 * Answers: each upload's outcome goes back to the loop thread that queued
 * it (one uv_async_t per loop, legacy_loop_open(), with a locked completion
 * list), where 'done' runs with that upload's own counts; the group's
 * alerts ride with its first upload.
 *
 * Rows are written in the order of their unique keys (store.c merges
 * health rows sorted; device reports and events are sorted here), so two
 * groups holding the same rows wait for each other rather than deadlock; a
 * group PostgreSQL aborts as a conflict anyway (SQLSTATE class 40,
 * LJ_ECONFLICT) is tried again, at most 3 times in all. Each group reports
 * ONE outcome to the PostgreSQL breaker (ok: committed, or the data
 * refused), not one per upload.
 *
 * Deadlines: an upload still QUEUED 'timeout_ms' after queueing is taken
 * out and never written: 'done' runs at once (LJ_EUNAVAIL, late=1). An
 * upload whose group is being written is never answered at its deadline:
 * 'done' waits for the group's outcome, which is bounded (writers wait on
 * PostgreSQL only through pg.h's bounded helpers). So an upload answered
 * anything but success was not stored, except where pg.h says the outcome
 * of a COMMIT cut short by a dropped connection is unknown.
 */
#ifndef LJ_PRODUCER_LEGACY_H
#define LJ_PRODUCER_LEGACY_H

#include <stdint.h>

#include <uv.h>

#include "buf.h"
#include "config.h"
#include "record.h"
#include "report.h"
#include "store.h"

/* Runs on the loop with the store's outcome: 0 (committed; 'st' says what
 * it did for this upload), LJ_EUNAVAIL (also: no reply within the
 * PostgreSQL bounds), LJ_EPOISON, LJ_EPG, LJ_ECONFLICT (still conflicting
 * after the retries) or LJ_ENOMEM. 'late': still queued at its deadline,
 * never written (rc LJ_EUNAVAIL). */
typedef void (*legacy_done_fn)(int rc, const store_stats *st, int late, void *arg);

/* Starts the writers (main thread, before any loop runs). 0, or -1. */
int legacy_start(const lj_config *cfg);

/* After every loop has closed (so nothing is queued): stops and joins the
 * writers, closes their connections. */
void legacy_stop(void);

/* Shutdown's drain deadline: from now on nothing more is written; every
 * queued upload and every group not yet started is handed back at once as
 * LJ_EUNAVAIL. A group being written finishes (bounded): wait until
 * legacy_writing() is 0 before pg_abort_waits() or answering its uploads.
 * Any thread. */
void legacy_abort(void);

/* Uploads being written now, on every loop. Any thread. */
int legacy_writing(void);

/* Where the answers of uploads queued on 'loop' come back: call before the
 * loop runs (any thread); it takes loop->data. legacy_loop_close() on the
 * loop thread once legacy_pending() is 0, before the loop's last run. */
int legacy_loop_open(uv_loop_t *loop);
void legacy_loop_close(uv_loop_t *loop);

/* Loop thread: uploads queued from 'loop' whose 'done' has not run. */
int legacy_pending(uv_loop_t *loop);

/* Queue one upload's records of 'b' / report 'd' (history ID 'id', a UUID
 * the legacy path makes) / event 'e'; borrowed until 'done', which runs in
 * every case once this returned 0. 0 when queued; LJ_EUNAVAIL when the
 * queue is full or stopping, LJ_ENOMEM (neither callback runs). */
int legacy_store(uv_loop_t *loop, const rec_batch *b, unsigned timeout_ms, legacy_done_fn done,
                 void *arg);
int legacy_store_device(uv_loop_t *loop, const rep_device *d, const char *id,
                        unsigned timeout_ms, legacy_done_fn done, void *arg);
int legacy_store_event(uv_loop_t *loop, const rep_event *e, unsigned timeout_ms,
                       legacy_done_fn done, void *arg);

/* The stream name the legacy path gives device reports in
 * t_device_info_history (with the upload's UUID as stream_id). */
#define LEGACY_DEVICE_STREAM "legacy"

/* For /metrics. */
typedef struct legacy_counts {
    unsigned long long groups;      /* group commits formed */
    unsigned long long transactions; /* tried: one per group, more when split */
    unsigned long long uploads;     /* uploads taken into groups */
    unsigned long long poison;      /* uploads refused by PostgreSQL */
    unsigned long long conflicts;   /* transactions aborted as a conflict (class 40) */
    unsigned long long queue_full;  /* uploads refused: queue full */
    unsigned long long expired;     /* uploads dropped from the queue at their deadline */
    long long queued;               /* waiting for a writer now */
    long long queue_peak;           /* most ever waiting at once */
    long long inflight;             /* queued or being written now */
} legacy_counts;

void legacy_counts_get(legacy_counts *out);

/* The counts above in Prometheus text (ljwx_legacy_*). */
int legacy_render_prometheus(lj_buf *out);

#endif
