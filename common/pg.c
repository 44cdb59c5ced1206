#include "pg.h"

#include <stdio.h>
#include <string.h>

#include "err.h"
#include "log.h"

PGconn *pg_connect(const char *dsn, const char *app, char *err, size_t errlen)
{
    const char *keys[] = {"connect_timeout", "dbname", "client_encoding", "application_name",
                          NULL};
    const char *vals[] = {PG_CONNECT_TIMEOUT_S, dsn, "UTF8", app, NULL};
    PGconn *c;

    /* expand_dbname=1: 'dsn' is a full conninfo string. It overrides the
     * connect timeout before it (a DSN may set its own); the two settings
     * after it override whatever it says. */
    c = PQconnectdbParams(keys, vals, 1);
    if (c == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (PQstatus(c) != CONNECTION_OK) {
        snprintf(err, errlen, "%s", PQerrorMessage(c));
        err[strcspn(err, "\n")] = '\0';
        PQfinish(c);
        return NULL;
    }
    return c;
}

int pg_failure(PGconn *c, const PGresult *r)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;

    if (PQstatus(c) != CONNECTION_OK)
        return LJ_EUNAVAIL;
    if (state && (strncmp(state, "22", 2) == 0 || strncmp(state, "23", 2) == 0))
        return LJ_EPOISON;
    return LJ_EPG;
}

/* 'quiet': a refusal of the data is expected by the caller, so debug only. */
static int check_result_q(PGconn *c, PGresult *r, ExecStatusType want, const char *what,
                          int quiet)
{
    int rc = 0;

    if (PQresultStatus(r) != want) {
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);

        rc = pg_failure(c, r);
        log_at(quiet && rc == LJ_EPOISON ? LOG_DEBUG : LOG_ERROR, "pg",
               "%s failed sqlstate=%s: %s", what, state ? state : "-", PQerrorMessage(c));
    }
    PQclear(r);
    return rc;
}

static int check_result(PGconn *c, PGresult *r, ExecStatusType want, const char *what)
{
    return check_result_q(c, r, want, what, 0);
}

/* A query may leave more results queued; the next command needs none left. */
static void drain_results(PGconn *c)
{
    PGresult *r;

    while ((r = PQgetResult(c)) != NULL)
        PQclear(r);
}

int pg_exec(PGconn *c, const char *sql)
{
    return check_result(c, PQexec(c, sql), PGRES_COMMAND_OK, "exec");
}

int pg_exec_params(PGconn *c, const char *sql, int n, const char *const *params)
{
    return check_result(c, PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0),
                        PGRES_COMMAND_OK, "exec");
}

static int copy_in(PGconn *c, const char *copy_sql, const char *data, size_t len, int quiet)
{
    int rc;

    if ((rc = check_result(c, PQexec(c, copy_sql), PGRES_COPY_IN, "copy start")) != 0)
        return rc;
    while (len > 0) {
        /* PQputCopyData takes an int length: send in bounded pieces. */
        int piece = len > (1u << 20) ? (1 << 20) : (int)len;

        if (PQputCopyData(c, data, piece) != 1) {
            PQputCopyEnd(c, "send failed");
            break;
        }
        data += piece;
        len -= (size_t)piece;
    }
    if (len == 0 && PQputCopyEnd(c, NULL) != 1)
        log_error("pg", "copy end failed: %s", PQerrorMessage(c));
    rc = check_result_q(c, PQgetResult(c), PGRES_COMMAND_OK, "copy", quiet);
    drain_results(c);
    return rc;
}

int pg_copy_in(PGconn *c, const char *copy_sql, const char *data, size_t len)
{
    return copy_in(c, copy_sql, data, len, 0);
}

int pg_copy_quiet(PGconn *c, const char *copy_sql, const char *data, size_t len)
{
    return copy_in(c, copy_sql, data, len, 1);
}
