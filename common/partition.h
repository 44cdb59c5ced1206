/* partition.h -- monthly partitions of t_user_health_data for any month a
 * batch touches (migration 003, ensure_health_months()).
 *
 * Readings may fall in any UTC month of 2000-01 .. 2099-12 (the validation's
 * range). Before a batch is stored, part_ensure() makes sure the months it
 * touches (within the window below) have their partitions, so a back-fill
 * of last year lands in monthly partitions rather than in the default one:
 *
 *     part_months want = {0};
 *     part_months_add(&want, ts_ms);  ... for every reading
 *     part_ensure(pg, &want);         -- outside the batch's transaction
 *
 * Cheap in the usual case: each connection registered with part_register()
 * remembers the months it has seen with a partition (a 150-byte bitmap kept
 * with the PGconn, freed by PQfinish()), so only a month new to the
 * connection costs a round trip, and the server takes no lock unless the
 * month is really missing. Creation is serialised in the server (two
 * workers asking for the same month: one creates it, the other finds it) and
 * moves rows of that month already in the default partition.
 *
 * Bounded for the upload paths: a device may send readings of any month,
 * and each new month is a CREATE TABLE under an EXCLUSIVE lock on the
 * parent (every writer waits). So part_ensure() asks only for months in the
 * window of part_window_set() -- the current UTC month, 'back' months
 * before it and PART_MONTHS_AHEAD after -- and for at most 'new_max' months
 * a connection has not seen per call; readings of other months go to the
 * default partition (their month is made later: by a batch inside the
 * window, ensure_health_partitions() or ljwx-import, which moves them). The
 * window is process-wide, set once at start before any thread runs; the
 * default is PART_WINDOW_BACK / PART_NEW_MAX. ljwx-import sets
 * part_window_any(): an operator's back-fill may create any month.
 *
 * A reader of the default partition makes the server give up at once
 * (migration 006: no insert waits behind it); part_ensure() asks again up to
 * four times within ~0.4 s, since such readers are mostly other batches. A
 * month that still could not be created (lock_timeout behind a long writer,
 * the default partition in use throughout, no EXECUTE on the function) is
 * no reason to refuse readings: they go to the
 * default partition as before, the failure is logged, and the month is asked
 * for again by the next batch (a missing function or grant: once per
 * connection). Blocking; one PGconn per thread.
 */
#ifndef LJ_COMMON_PARTITION_H
#define LJ_COMMON_PARTITION_H

#include <stdint.h>

#include <libpq-fe.h>

#define PART_FIRST_YEAR 2000
#define PART_MONTHS 1200    /* 2000-01 .. 2099-12 */
#define PART_MONTHS_AHEAD 3 /* as ensure_health_partitions(3) of the consumer's upkeep */
#define PART_WINDOW_BACK 24 /* defaults of --partition-window-months, */
#define PART_NEW_MAX 3      /* --partition-new-months */

typedef struct part_months {
    uint8_t bits[PART_MONTHS / 8];
} part_months;

/* Index 0..PART_MONTHS-1 of the UTC month of 'ts_ms', or -1 outside the range. */
int part_month_index(int64_t ts_ms);

/* Adds the month of 'ts_ms' to 'm' (a time outside the range: nothing). */
void part_months_add(part_months *m, int64_t ts_ms);

/* The upload paths' window: months [now - back, now + PART_MONTHS_AHEAD]
 * (UTC), at most 'new_max' (>= 1) months asked for per part_ensure(). Call
 * before any thread uses part_ensure(). */
void part_window_set(int back, int new_max);

/* No window, no cap (ljwx-import). */
void part_window_any(void);

/* Index of the first and last month (inclusive) of the window at 'now_ms';
 * any: 0 and PART_MONTHS-1. Exposed for tests. */
void part_window_range(int64_t now_ms, int *first, int *last);

/* Attaches the cache of known months to 'pg' (idempotent). 0, or LJ_ENOMEM;
 * without it part_ensure() still works, asking the server every time. */
int part_register(PGconn *pg);

/* Creates the partitions of the months of 'want' that 'pg' has not seen yet,
 * within the window and the cap (the others are left to the default
 * partition), in a transaction of its own: call it with no transaction
 * open. 0, also
 * when a month could not be created (logged; its rows go to the default
 * partition); LJ_EUNAVAIL when the connection is lost; LJ_ENOMEM. */
int part_ensure(PGconn *pg, const part_months *want);

#endif
