/* pg.h -- small libpq helpers.
 *
 * Blocking calls: use them from a consumer worker thread or a producer
 * worker thread, never on an event loop. One PGconn per thread. Error text
 * from the server goes to the log, never to HTTP clients (SECURITY.md).
 */
#ifndef LJ_COMMON_PG_H
#define LJ_COMMON_PG_H

#include <stddef.h>

#include <libpq-fe.h>

/* Seconds a connection attempt may take unless the DSN sets connect_timeout:
 * a PostgreSQL that accepts TCP but never answers then fails a connect in
 * seconds instead of holding the caller (a pool thread, a worker) forever. */
#define PG_CONNECT_TIMEOUT_S "5"

/* Connects with client_encoding=UTF8, 'app' as application_name and
 * PG_CONNECT_TIMEOUT_S. Returns the connection, or NULL with a reason in 'err'. */
PGconn *pg_connect(const char *dsn, const char *app, char *err, size_t errlen);

/* Runs one parameterless command. 0, or a failure as pg_failure() (logged). */
int pg_exec(PGconn *c, const char *sql);

/* Runs 'sql' with 'n' text parameters (NULL: SQL NULL), expecting no rows.
 * Errors as pg_exec(). */
int pg_exec_params(PGconn *c, const char *sql, int n, const char *const *params);

/* Runs 'copy_sql' ("COPY ... FROM STDIN") and sends 'len' bytes of 'data'.
 * Returns 0 or an error as pg_exec(). */
int pg_copy_in(PGconn *c, const char *copy_sql, const char *data, size_t len);

/* As pg_copy_in(), but a refusal of the data (LJ_EPOISON) is logged at
 * debug level only: for callers that expect it and have a fallback. */
int pg_copy_quiet(PGconn *c, const char *copy_sql, const char *data, size_t len);

/* The code for a failed call whose result is 'r' (may be NULL):
 * LJ_EUNAVAIL when the connection is down; LJ_EPOISON when the server
 * refused the data itself (SQLSTATE class 22, data exception, or 23,
 * integrity violation), which no retry will change; else LJ_EPG (a
 * transient failure such as a deadlock, a timeout or a serialization
 * failure, worth retrying). */
int pg_failure(PGconn *c, const PGresult *r);

#endif
