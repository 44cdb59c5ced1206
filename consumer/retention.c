#include "retention.h"

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "archive.h"
#include "err.h"
#include "log.h"
#include "pg.h"

/* The archive's COPY and the drop's count may read a large partition. */
#define RETENTION_STATEMENT_MS 600000
#define RETENTION_TIMEOUT_SQL "SET LOCAL statement_timeout = 600000"

#define PART_RE "^t_user_health_data_[0-9]{6}$"
#define BOUND_RE "^[0-9]{4}-[0-9]{2}-[0-9]{2} 00:00:00\\+00$"

typedef struct victim {
    char part[64];      /* the partition */
    char keep[16];      /* keep_months, as text */
} victim;

/* Nonzero when 's' matches the extended regular expression 're'. */
static int matches(const char *re, const char *s)
{
    regex_t r;
    int ok;

    if (regcomp(&r, re, REG_EXTENDED | REG_NOSUB) != 0)
        return 0;
    ok = regexec(&r, s, 0, NULL, 0) == 0;
    regfree(&r);
    return ok;
}

/* Runs 'sql' expecting one row; copies its columns 0..n-1 into 'out' (32
 * bytes each). 1 with a row, 0 with none, or an LJ_E* code (logged). */
static int one_row(PGconn *pg, const char *sql, int nparams, const char *const *params,
                   char (*out)[32], int n)
{
    PGresult *r = pg_query_params_within(pg, sql, nparams, params, RETENTION_STATEMENT_MS + 5000);
    int rc = 0;
    int i;

    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;

        rc = pg_failure(pg, r);
        log_error("retention", "%.40s... failed sqlstate=%s: %s", sql, state ? state : "-",
                  PQerrorMessage(pg));
    } else if (PQntuples(r) == 1 && PQnfields(r) >= n) {
        rc = 1;
        for (i = 0; i < n; i++)
            if (PQgetisnull(r, 0, i) ||
                snprintf(out[i], sizeof(out[i]), "%s", PQgetvalue(r, 0, i)) >= (int)sizeof(out[i]))
                rc = LJ_EPG;    /* not what migration 008 returns */
    }
    PQclear(r);
    return rc;
}

/* The archive's file name: NAME.YYYYMMDDTHHMMSSZ.copy (UTC now). */
static void archive_name(const char *part, char *out, size_t len)
{
    time_t now = time(NULL);
    struct tm tm;
    char stamp[32];

    gmtime_r(&now, &tm);
    strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
    snprintf(out, len, "%s.%s.copy", part, stamp);
}

/* Locks 'v' against writes and copies its rows to a new file in 'dir'.
 * 0 with 'a' finished and '*rows' set; else an LJ_E* code, nothing left. */
static int archive_victim(PGconn *pg, victim *v, const char *dir, archive_file *a,
                          long long *rows)
{
    const char *params[] = {v->part, v->keep};
    char range[2][32];
    char name[128];
    char sql[256];
    int rc;

    rc = one_row(pg, "SELECT range_from, range_to FROM lock_health_partition($1, $2)", 2, params,
                 range, 2);
    if (rc != 1)
        return rc == 0 ? LJ_EPG : rc;
    if (!matches(BOUND_RE, range[0]) || !matches(BOUND_RE, range[1])) {
        log_error("retention", "unexpected range of %s: %s .. %s", v->part, range[0], range[1]);
        return LJ_EPG;
    }
    /* Literals checked above (digits of a UTC month start): COPY takes no
     * parameters. The parent's rows of the range are the partition's, read
     * with the parent's grant. */
    snprintf(sql, sizeof(sql),
             "COPY (SELECT * FROM t_user_health_data WHERE ts >= '%s' AND ts < '%s') TO STDOUT",
             range[0], range[1]);
    archive_name(v->part, name, sizeof(name));
    if ((rc = archive_open(a, dir, name)) != 0)
        return rc;
    if ((rc = pg_copy_out(pg, sql, archive_write, a, rows)) != 0) {
        archive_discard(a);
        return rc;
    }
    return archive_finish(a);
}

/* Drops 'v' (archived in 'a' when 'archived'); returns the rows dropped in
 * '*rows'. 0, or an LJ_E* code. */
static int drop_victim(PGconn *pg, const victim *v, const archive_file *a, int archived,
                       long long *rows)
{
    char nrows[24];
    char nbytes[24];
    const char *params[] = {v->part, v->keep, archived ? nrows : NULL,
                            archived ? a->path : NULL, archived ? a->sha256 : NULL,
                            archived ? nbytes : NULL};
    char out[1][32];
    int rc;

    snprintf(nrows, sizeof(nrows), "%lld", *rows);
    snprintf(nbytes, sizeof(nbytes), "%lld", a->bytes);
    rc = one_row(pg, "SELECT drop_health_partition($1, $2, $3, $4, $5, $6)", 6, params, out, 1);
    if (rc != 1)
        return rc == 0 ? LJ_EPG : rc;
    *rows = strtoll(out[0], NULL, 10);
    return 0;
}

/* In the open transaction: takes the retention lock and names the oldest
 * partition due in 'v'->part. 1; 0 when the lock is taken elsewhere or
 * nothing is due; or an LJ_E* code. */
static int pick_victim(PGconn *pg, victim *v)
{
    const char *params[] = {v->keep};
    char got[1][32];
    int rc;

    rc = one_row(pg, "SELECT pg_try_advisory_xact_lock(" RETENTION_LOCK ")::text", 0, NULL, got,
                 1);
    if (rc != 1 || strcmp(got[0], "true") != 0)
        return rc == 1 ? 0 : rc;
    rc = one_row(pg, "SELECT part FROM health_retention_candidates($1::integer) LIMIT 1", 1,
                 params, got, 1);
    if (rc != 1)
        return rc;
    if (!matches(PART_RE, got[0])) {
        log_error("retention", "unexpected partition name %s: nothing dropped", got[0]);
        return LJ_EPG;
    }
    snprintf(v->part, sizeof(v->part), "%s", got[0]);
    return 1;
}

/* COMMIT of the drop of 'v'. 0, or an LJ_E* code: when the server refused,
 * nothing was dropped and the archive 'a' is removed; when it did not
 * answer, the drop may have committed and the archive stays. */
static int commit_drop(PGconn *pg, const victim *v, archive_file *a, int archived)
{
    int rc = pg_exec(pg, "COMMIT");

    if (rc == 0)
        return 0;
    if (PQstatus(pg) == CONNECTION_OK) {
        log_error("retention", "commit of the drop of %s failed: nothing dropped", v->part);
        archive_discard(a);
    } else {
        log_error("retention", "commit of the drop of %s: outcome unknown, archive kept: %s",
                  v->part, archived ? a->path : "none");
    }
    return rc;
}

/* One partition, in its own transaction. 1 when one was dropped, 0 when
 * none is due (or another process holds the lock), else an LJ_E* code. */
static int drop_one(PGconn *pg, int keep_months, const char *dir)
{
    victim v;
    archive_file a;
    long long rows = 0;
    int archived = dir && *dir;
    int rc;

    memset(&a, 0, sizeof(a));
    a.fd = -1;
    snprintf(v.keep, sizeof(v.keep), "%d", keep_months);
    if ((rc = pg_begin(pg)) != 0)
        return rc;
    if ((rc = pg_exec(pg, RETENTION_TIMEOUT_SQL)) != 0 || (rc = pick_victim(pg, &v)) != 1)
        goto rollback;
    if (archived && (rc = archive_victim(pg, &v, dir, &a, &rows)) != 0) {
        log_error("retention", "archive of %s to %s failed (%s): nothing dropped", v.part, dir,
                  lj_strerror(rc));
        goto rollback;
    }
    if ((rc = drop_victim(pg, &v, &a, archived, &rows)) != 0) {
        archive_discard(&a);
        goto rollback;
    }
    if ((rc = commit_drop(pg, &v, &a, archived)) != 0)
        return rc;
    log_info("retention", "dropped partition=%s rows=%lld keep_months=%d archive=%s sha256=%s",
             v.part, rows, keep_months, archived ? a.path : "none", archived ? a.sha256 : "-");
    return 1;
rollback:
    if (PQstatus(pg) == CONNECTION_OK)
        pg_exec(pg, "ROLLBACK");
    return rc;
}

int retention_run(PGconn *pg, int keep_months, const char *archive_dir, int *dropped)
{
    int i;
    int rc;

    for (i = 0; i < RETENTION_MAX_RUN; i++) {
        if ((rc = drop_one(pg, keep_months, archive_dir)) <= 0)
            return rc;
        (*dropped)++;
    }
    return 0;
}
