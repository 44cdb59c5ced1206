/* retention.h -- health partitions older than --retention-months are
 * archived (with --retention-archive-dir), detached and dropped (issue 19,
 * migration 008). Called by a health worker's hourly upkeep (upkeep.c).
 *
 * One partition per transaction, oldest first, at most RETENTION_MAX_RUN per
 * call:
 *
 *     BEGIN; SET LOCAL statement_timeout
 *     pg_try_advisory_xact_lock(RETENTION_LOCK)  -- false: another worker or
 *                                                   process is at it; stop
 *     health_retention_candidates(N)  LIMIT 1    -- none: done
 *   [ lock_health_partition(p, N)                -- SHARE: no row reaches p
 *     COPY (rows of p's range) TO STDOUT  -> archive.h (fsync, SHA-256) ]
 *     drop_health_partition(p, N [, rows, file, sha256, bytes])
 *                                                -- count (= archived), DETACH,
 *                                                   DROP, audit row
 *     COMMIT
 *
 * A transaction-level lock only (no session state: works through a
 * transaction-pooling PgBouncer). A failed archive, drop or COMMIT rolls
 * back (the partition stays, the archive file is removed) and ends the
 * call; the next upkeep tries again. Only a COMMIT left unanswered (the
 * connection lost: it may have committed) keeps its archive file. The default partition is never dropped (rows of old
 * months in it stay: docs/operations.md, "Retention"). Blocking; the
 * worker's own connection, no transaction open.
 */
#ifndef LJ_CONSUMER_RETENTION_H
#define LJ_CONSUMER_RETENTION_H

#include <libpq-fe.h>

#define RETENTION_LOCK "7262023"    /* 7262021: migrate.sh, 7262022: partitions */
#define RETENTION_MAX_RUN 12        /* partitions dropped per call at most */

/* Drops the partitions older than 'keep_months' (1..1200), archiving each
 * to 'archive_dir' first unless it is NULL or "". Adds the partitions
 * dropped to '*dropped'. 0, also when another process holds the lock;
 * LJ_EIO when an archive could not be written; LJ_EUNAVAIL when the
 * connection was lost; LJ_EPG (or another pg_failure() code) when the
 * server refused (logged). */
int retention_run(PGconn *pg, int keep_months, const char *archive_dir, int *dropped);

#endif
