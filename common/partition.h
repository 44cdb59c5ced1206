/* partition.h -- monthly partitions of t_user_health_data for any month a
 * batch touches (migration 003, ensure_health_months()).
 *
 * Readings may fall in any UTC month of 2000-01 .. 2099-12 (the validation's
 * range). Before a batch is stored, part_ensure() makes sure every month it
 * touches has its partition, so a back-fill of last year lands in monthly
 * partitions rather than in the default one:
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
 * A month that could not be created (lock_timeout behind a long writer, no
 * EXECUTE on the function) is no reason to refuse readings: they go to the
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

typedef struct part_months {
    uint8_t bits[PART_MONTHS / 8];
} part_months;

/* Index 0..PART_MONTHS-1 of the UTC month of 'ts_ms', or -1 outside the range. */
int part_month_index(int64_t ts_ms);

/* Adds the month of 'ts_ms' to 'm' (a time outside the range: nothing). */
void part_months_add(part_months *m, int64_t ts_ms);

/* Attaches the cache of known months to 'pg' (idempotent). 0, or LJ_ENOMEM;
 * without it part_ensure() still works, asking the server every time. */
int part_register(PGconn *pg);

/* Creates the partitions of the months of 'want' that 'pg' has not seen yet
 * (in a transaction of its own: call it with no transaction open). 0, also
 * when a month could not be created (logged; its rows go to the default
 * partition); LJ_EUNAVAIL when the connection is lost; LJ_ENOMEM. */
int part_ensure(PGconn *pg, const part_months *want);

#endif
