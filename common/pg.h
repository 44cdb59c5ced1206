/* pg.h -- small libpq helpers, every wait bounded.
 *
 * Blocking calls: use them from a consumer worker thread or a producer
 * worker thread, never on an event loop. One PGconn per thread. Error text
 * from the server goes to the log, never to HTTP clients (SECURITY.md).
 *
 * Deadlines (docs/operations.md): a connection made by pg_connect() carries
 * connect_timeout, TCP keepalives, tcp_user_timeout and, through 'options',
 * statement_timeout and lock_timeout, each from the configuration unless the
 * DSN sets it. None of those helps against a server that is alive to the
 * kernel but does not run (SIGSTOPped, swapped to death): the kernel still
 * ACKs, and a stopped server enforces no statement timeout. So every helper
 * below waits for the server with poll() and its own client-side bound
 * (--pg-reply-timeout-ms); on expiry, or after pg_abort_waits(), it drops the
 * connection (shutdown of the socket: PQstatus() is then CONNECTION_BAD and
 * pg_failure() says LJ_EUNAVAIL) and the caller reconnects. Dropping, not
 * PQcancel(): a cancel request to a stopped server would wait as long.
 * A statement cut short this way may still commit if it was COMMIT itself
 * and the server resumes; callers treat the outcome as unknown (the stream
 * path redelivers, a legacy client retries; (device_sn, ts) dedups either).
 */
#ifndef LJ_COMMON_PG_H
#define LJ_COMMON_PG_H

#include <stddef.h>

#include <libpq-fe.h>

#include "config.h"

/* Process-wide connection settings, from the configuration. */
typedef struct pg_settings {
    int connect_timeout_s;
    int keepalives_idle_s;
    int keepalives_interval_s;
    int keepalives_count;
    int tcp_user_timeout_ms;    /* 0: the kernel's default */
    int statement_timeout_ms;   /* 0: not set by us (server or role default) */
    int lock_timeout_ms;        /* 0: not set by us */
    int reply_timeout_ms;       /* client-side bound of one helper call */
    int pooled;                 /* 1: behind a transaction pooler (no startup
                                 * 'options'; SET LOCAL in pg_begin()) */
} pg_settings;

/* Keyword/value arrays for PQconnectdbParams(..., expand_dbname=1), with the
 * text they point to. Built by pg_conninfo_build(). */
#define PG_CONNINFO_MAX 16
typedef struct pg_conninfo {
    const char *keys[PG_CONNINFO_MAX];
    const char *vals[PG_CONNINFO_MAX];
    char num[8][16];
    char options[1024];
} pg_conninfo;

/* Fills 's' from 'cfg' (the pg_* settings). */
void pg_settings_from(pg_settings *s, const lj_config *cfg);

/* Sets the settings of every later pg_connect() and prepares
 * pg_abort_waits(). Call once at start, before any thread uses PostgreSQL.
 * Without it, the defaults of the configuration table apply. Logs a warning
 * when 'cfg'->claim_idle_ms is not at least twice the statement and reply
 * timeouts (SPEC §5.1: a slow commit must not be claimed by another worker). */
void pg_init(const lj_config *cfg);

/* The arrays for 'dsn' (key=value or URI) under 's': the timeouts and
 * keepalives come before "dbname", so whatever the DSN sets wins; "options"
 * comes after it, holding "-c statement_timeout=.. -c lock_timeout=.."
 * followed by the DSN's own options (or PGOPTIONS when the DSN has none), so
 * a -c the user gave still wins. With 's'->pooled, ours are left out (a
 * transaction pooler refuses the startup parameter; pg_begin() sets them
 * per transaction) and only the user's own options, if any, are passed on.
 * A multi-host DSN (host=a,b port=p,q target_session_attrs=read-write) is
 * passed to libpq as it is: connect_timeout then bounds each host's attempt.
 * client_encoding=UTF8 and application_name 'app' always win. 0, or LJ_EINVAL when 'dsn' does not parse or the merged
 * options do not fit ('err' says why; never the DSN's text). */
int pg_conninfo_build(const char *dsn, const pg_settings *s, const char *app, pg_conninfo *out,
                      char *err, size_t errlen);

/* Connects as pg_conninfo_build() says, in nonblocking mode for the helpers
 * below. Returns the connection, or NULL with a reason in 'err'. */
PGconn *pg_connect(const char *dsn, const char *app, char *err, size_t errlen);

/* From now on every wait of every helper, in every thread, ends at once as
 * a timeout (the connection is dropped). For shutdown. Any thread;
 * async-signal-safe; idempotent. */
void pg_abort_waits(void);

/* PQexec() / PQexecParams() (text parameters, text results) bounded by the
 * reply timeout, or by 'timeout_ms' for pg_query_within(). Returns the last
 * result as PQexec() does (PQclear() it), or NULL when no reply came in time
 * (logged; the connection is dropped) or on out of memory. */
PGresult *pg_query(PGconn *c, const char *sql);
PGresult *pg_query_within(PGconn *c, const char *sql, int timeout_ms);
PGresult *pg_query_params(PGconn *c, const char *sql, int nparams, const char *const *params);

/* pg_query_params() bounded by 'timeout_ms' instead of the reply timeout
 * (for maintenance statements that may run long). */
PGresult *pg_query_params_within(PGconn *c, const char *sql, int nparams,
                                 const char *const *params, int timeout_ms);

/* Opens a transaction: BEGIN, and with --pg-pooled also SET LOCAL
 * statement_timeout and lock_timeout (those configured, in the same round
 * trip), since a transaction pooler gives each transaction whatever server
 * session is free. 0, or a failure as pg_exec(). */
int pg_begin(PGconn *c);

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

/* Receives one chunk of COPY ... TO STDOUT data ('len' bytes, borrowed).
 * Returns 0 to go on, or an LJ_E* code to stop the copy with it. */
typedef int (*pg_copy_sink)(void *arg, const char *data, size_t len);

/* Runs 'copy_sql' ("COPY ... TO STDOUT") and hands every chunk to 'sink'.
 * The reply timeout bounds each wait for the next chunk, not the whole copy.
 * 0 with the rows copied in '*rows'; the server's failure as pg_exec();
 * LJ_EUNAVAIL on a timeout (the connection dropped); the sink's first
 * nonzero code when it refused a chunk (the rest of the data is then read
 * and discarded: libpq cannot end a COPY OUT early; the connection stays). */
int pg_copy_out(PGconn *c, const char *copy_sql, pg_copy_sink sink, void *arg, long long *rows);

/* The code for a failed call whose result is 'r' (may be NULL):
 * LJ_EUNAVAIL when the connection is down (or was dropped on a timeout), or
 * when the server is a read-only standby (SQLSTATE 25006: the primary was
 * demoted, or a failover is under way): that connection is dropped here, so
 * the caller's usual reconnect (PQstatus() is CONNECTION_BAD) finds the
 * read-write host of a multi-host DSN;
 * LJ_EPOISON when the server refused the data itself (SQLSTATE class 22,
 * data exception, or 23, integrity violation), which no retry will change;
 * LJ_ECONFLICT when it aborted the transaction as a conflict (SQLSTATE
 * class 40: deadlock, serialization failure), worth retrying at once;
 * else LJ_EPG (a transient failure such as a statement or lock timeout,
 * worth retrying later). */
int pg_failure(PGconn *c, const PGresult *r);

#endif
