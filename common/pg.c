#include "pg.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "log.h"

/* The defaults of the configuration table (config.c), for programs (unit
 * tests) that never call pg_init(). */
static pg_settings settings = {5, 30, 10, 3, 30000, 10000, 5000, 15000, 0};

/* pg_abort_waits(): a byte in this pipe makes every poll() return. */
static int abort_fd[2] = {-1, -1};
static atomic_int aborted;

/* ------------------------------------------------------------------------
 * Settings and connection parameters
 * ------------------------------------------------------------------------ */

void pg_settings_from(pg_settings *s, const lj_config *cfg)
{
    s->connect_timeout_s = cfg->pg_connect_timeout_s;
    s->keepalives_idle_s = cfg->pg_keepalives_idle_s;
    s->keepalives_interval_s = cfg->pg_keepalives_interval_s;
    s->keepalives_count = cfg->pg_keepalives_count;
    s->tcp_user_timeout_ms = cfg->pg_tcp_user_timeout_ms;
    s->statement_timeout_ms = cfg->pg_statement_timeout_ms;
    s->lock_timeout_ms = cfg->pg_lock_timeout_ms;
    s->reply_timeout_ms = cfg->pg_reply_timeout_ms;
    s->pooled = cfg->pg_pooled;
}

static int open_abort_pipe(void)
{
    int i;

    if (pipe(abort_fd) != 0)
        return -1;
    for (i = 0; i < 2; i++)
        if (fcntl(abort_fd[i], F_SETFD, FD_CLOEXEC) != 0 ||
            fcntl(abort_fd[i], F_SETFL, O_NONBLOCK) != 0)
            return -1;
    return 0;
}

void pg_init(const lj_config *cfg)
{
    int longest;

    pg_settings_from(&settings, cfg);
    if (abort_fd[0] < 0 && open_abort_pipe() != 0) {
        log_warn("pg", "pipe: %s (waits cannot be cut short at shutdown)", strerror(errno));
        abort_fd[0] = abort_fd[1] = -1;
    }
    longest = settings.statement_timeout_ms > settings.reply_timeout_ms
                  ? settings.statement_timeout_ms
                  : settings.reply_timeout_ms;
    if (cfg->claim_idle_ms < 2 * longest)
        log_warn("pg", "claim_idle_ms=%d is not well above the PostgreSQL timeouts (%d ms): "
                       "a slow commit may be claimed by another worker (SPEC 5.1)",
                 cfg->claim_idle_ms, longest);
}

void pg_abort_waits(void)
{
    static const char one = 1;

    if (atomic_exchange(&aborted, 1) == 0 && abort_fd[1] >= 0 &&
        write(abort_fd[1], &one, 1) != 1) {
        /* nothing to do: 'aborted' alone still ends every later wait */
    }
}

static void add(pg_conninfo *o, size_t *n, const char *key, const char *val)
{
    o->keys[*n] = key;
    o->vals[*n] = val;
    (*n)++;
}

/* Adds 'key' with the number 'v' (skipped when 'v' is below 'min'). */
static void add_num(pg_conninfo *o, size_t *n, size_t *nums, const char *key, int v, int min)
{
    if (v < min)
        return;
    snprintf(o->num[*nums], sizeof(o->num[0]), "%d", v);
    add(o, n, key, o->num[(*nums)++]);
}

/* The user's own backend options: the DSN's, else PGOPTIONS. */
static const char *user_options(const PQconninfoOption *parsed)
{
    const PQconninfoOption *p;

    for (p = parsed; p && p->keyword; p++)
        if (strcmp(p->keyword, "options") == 0 && p->val && p->val[0])
            return p->val;
    return getenv("PGOPTIONS");
}

/* "-c statement_timeout=.. -c lock_timeout=.. <user's>" into 'o->options'
 * (only the user's when pooled: pg_begin() sets ours then). */
static int merge_options(pg_conninfo *o, const pg_settings *s, const char *user)
{
    size_t len = 0;
    int n;

    o->options[0] = '\0';
    if (!s->pooled && s->statement_timeout_ms > 0) {
        n = snprintf(o->options, sizeof(o->options), "-c statement_timeout=%d",
                     s->statement_timeout_ms);
        len = (size_t)n;
    }
    if (!s->pooled && s->lock_timeout_ms > 0) {
        n = snprintf(o->options + len, sizeof(o->options) - len, "%s-c lock_timeout=%d",
                     len ? " " : "", s->lock_timeout_ms);
        len += (size_t)n;
    }
    if (user && user[0]) {
        if (len + 1 + strlen(user) + 1 > sizeof(o->options))
            return LJ_EINVAL;
        n = snprintf(o->options + len, sizeof(o->options) - len, "%s%s", len ? " " : "", user);
        len += (size_t)n;
    }
    return len < sizeof(o->options) ? 0 : LJ_EINVAL;
}

int pg_conninfo_build(const char *dsn, const pg_settings *s, const char *app, pg_conninfo *out,
                      char *err, size_t errlen)
{
    PQconninfoOption *parsed;
    char *perr = NULL;
    size_t nums = 0;
    size_t n = 0;
    int rc;

    if ((parsed = PQconninfoParse(dsn, &perr)) == NULL) {
        /* perr may quote the DSN (a password): say only that it is bad */
        snprintf(err, errlen, perr ? "the DSN does not parse" : "out of memory");
        PQfreemem(perr);
        return LJ_EINVAL;
    }
    /* Before dbname: the DSN's own values win. */
    add_num(out, &n, &nums, "connect_timeout", s->connect_timeout_s, 1);
    add(out, &n, "keepalives", "1");
    add_num(out, &n, &nums, "keepalives_idle", s->keepalives_idle_s, 1);
    add_num(out, &n, &nums, "keepalives_interval", s->keepalives_interval_s, 1);
    add_num(out, &n, &nums, "keepalives_count", s->keepalives_count, 1);
    add_num(out, &n, &nums, "tcp_user_timeout", s->tcp_user_timeout_ms, 1);
    add(out, &n, "dbname", dsn);
    /* After it: ours (the merged options keep the user's last, so theirs win). */
    rc = merge_options(out, s, user_options(parsed));
    PQconninfoFree(parsed);
    if (rc != 0) {
        snprintf(err, errlen, "the DSN's options are too long to add the timeouts to");
        return rc;
    }
    if (out->options[0])
        add(out, &n, "options", out->options);
    add(out, &n, "client_encoding", "UTF8");
    add(out, &n, "application_name", app);
    out->keys[n] = NULL;
    out->vals[n] = NULL;
    return 0;
}

PGconn *pg_connect(const char *dsn, const char *app, char *err, size_t errlen)
{
    pg_conninfo ci;
    PGconn *c;

    if (pg_conninfo_build(dsn, &settings, app, &ci, err, errlen) != 0)
        return NULL;
    /* Blocking, but bounded by connect_timeout, which libpq enforces itself
     * over the whole handshake (a stopped server included). */
    c = PQconnectdbParams(ci.keys, ci.vals, 1);
    if (c == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (PQstatus(c) != CONNECTION_OK || PQsetnonblocking(c, 1) != 0) {
        snprintf(err, errlen, "%s", PQerrorMessage(c));
        err[strcspn(err, "\n")] = '\0';
        PQfinish(c);
        return NULL;
    }
    return c;
}

/* ------------------------------------------------------------------------
 * Bounded waits
 * ------------------------------------------------------------------------ */

static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits until the socket of 'c' is ready for 'events' or 'deadline' (ms,
 * monotonic). 0 when ready; -1 on timeout, abort or a poll error. */
static int wait_socket(PGconn *c, short events, long long deadline)
{
    struct pollfd fds[2] = {{PQsocket(c), events, 0}, {abort_fd[0], POLLIN, 0}};
    long long left;
    int n;

    for (;;) {
        if (atomic_load(&aborted) || fds[0].fd < 0)
            return -1;
        if ((left = deadline - now_ms()) <= 0)
            return -1;
        n = poll(fds, 2, left > 1000000 ? 1000000 : (int)left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 || fds[1].revents)
            return -1;
        if (fds[0].revents)
            return 0;
    }
}

/* Drops the connection: the caller's next look at PQstatus() says
 * CONNECTION_BAD. */
static void drop(PGconn *c)
{
    if (PQsocket(c) >= 0)
        shutdown(PQsocket(c), SHUT_RDWR);
    PQconsumeInput(c);      /* libpq reads the EOF and marks the connection bad */
}

/* No reply in time: drop the connection. */
static void give_up(PGconn *c, const char *what, int timeout_ms)
{
    if (atomic_load(&aborted))
        log_warn("pg", "%s abandoned: shutting down", what);
    else
        log_warn("pg", "%s: no reply from postgresql within %d ms, connection dropped", what,
                 timeout_ms);
    drop(c);
}

/* Sends what libpq has queued. 0, or -1 on timeout (or a send error). */
static int flush_within(PGconn *c, long long deadline)
{
    int r;

    while ((r = PQflush(c)) == 1) {
        if (wait_socket(c, POLLOUT | POLLIN, deadline) != 0)
            return -1;
        if (!PQconsumeInput(c))     /* the server may talk while we send */
            return 0;               /* an error: PQgetResult() reports it */
    }
    return 0;   /* r == -1: a send error, which PQgetResult() reports */
}

/* Waits until PQgetResult() will not block. 0, or -1 on timeout. */
static int await_result(PGconn *c, long long deadline)
{
    while (PQisBusy(c)) {
        if (wait_socket(c, POLLIN, deadline) != 0)
            return -1;
        if (!PQconsumeInput(c))
            return 0;
    }
    return 0;
}

/* The results of the command sent on 'c', as PQexec() gives them: the last
 * one, or the first COPY state. NULL on timeout (the connection dropped). */
static PGresult *collect_within(PGconn *c, long long deadline, const char *what, int timeout_ms)
{
    PGresult *last = NULL;
    PGresult *r;

    for (;;) {
        if (flush_within(c, deadline) != 0 || await_result(c, deadline) != 0) {
            PQclear(last);
            give_up(c, what, timeout_ms);
            return NULL;
        }
        if ((r = PQgetResult(c)) == NULL)
            return last;
        PQclear(last);
        last = r;
        switch (PQresultStatus(r)) {
        case PGRES_COPY_IN:
        case PGRES_COPY_OUT:
        case PGRES_COPY_BOTH:
            return r;
        default:
            break;
        }
        if (PQstatus(c) == CONNECTION_BAD)
            return last;
    }
}

static PGresult *query_within(PGconn *c, const char *sql, int nparams,
                              const char *const *params, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    int sent;

    if (atomic_load(&aborted)) {
        give_up(c, "query", timeout_ms);
        return NULL;
    }
    sent = nparams > 0 ? PQsendQueryParams(c, sql, nparams, NULL, params, NULL, NULL, 0)
                       : PQsendQuery(c, sql);
    if (!sent)
        return NULL;    /* the connection is bad or busy: PQerrorMessage() says */
    return collect_within(c, deadline, "query", timeout_ms);
}

PGresult *pg_query(PGconn *c, const char *sql)
{
    return query_within(c, sql, 0, NULL, settings.reply_timeout_ms);
}

PGresult *pg_query_within(PGconn *c, const char *sql, int timeout_ms)
{
    return query_within(c, sql, 0, NULL, timeout_ms);
}

PGresult *pg_query_params(PGconn *c, const char *sql, int nparams, const char *const *params)
{
    return query_within(c, sql, nparams, params, settings.reply_timeout_ms);
}

PGresult *pg_query_params_within(PGconn *c, const char *sql, int nparams,
                                 const char *const *params, int timeout_ms)
{
    return query_within(c, sql, nparams, params, timeout_ms);
}

/* ------------------------------------------------------------------------
 * Commands and COPY
 * ------------------------------------------------------------------------ */

int pg_failure(PGconn *c, const PGresult *r)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;

    if (PQstatus(c) != CONNECTION_OK)
        return LJ_EUNAVAIL;
    if (state && strcmp(state, "25006") == 0) {
        /* read_only_sql_transaction: a standby. Not the data's fault; drop
         * the connection so the reconnect looks for the primary. */
        log_warn("pg", "the server is read-only (a standby): reconnecting");
        drop(c);
        return LJ_EUNAVAIL;
    }
    if (state && (strncmp(state, "22", 2) == 0 || strncmp(state, "23", 2) == 0))
        return LJ_EPOISON;
    if (state && strncmp(state, "40", 2) == 0)
        return LJ_ECONFLICT;
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
        /* the result's own text: pg_failure() may have dropped 'c' */
        log_at(quiet && rc == LJ_EPOISON ? LOG_DEBUG : LOG_ERROR, "pg",
               "%s failed sqlstate=%s: %s", what, state ? state : "-",
               r ? PQresultErrorMessage(r) : PQerrorMessage(c));
    }
    PQclear(r);
    return rc;
}

static int check_result(PGconn *c, PGresult *r, ExecStatusType want, const char *what)
{
    return check_result_q(c, r, want, what, 0);
}

int pg_begin(PGconn *c)
{
    char sql[128];
    int n = snprintf(sql, sizeof(sql), "BEGIN");

    if (settings.pooled && settings.statement_timeout_ms > 0)
        n += snprintf(sql + n, sizeof(sql) - (size_t)n, "; SET LOCAL statement_timeout = %d",
                      settings.statement_timeout_ms);
    if (settings.pooled && settings.lock_timeout_ms > 0)
        snprintf(sql + n, sizeof(sql) - (size_t)n, "; SET LOCAL lock_timeout = %d",
                 settings.lock_timeout_ms);
    return pg_exec(c, sql);
}

int pg_exec(PGconn *c, const char *sql)
{
    return check_result(c, pg_query(c, sql), PGRES_COMMAND_OK, "exec");
}

int pg_exec_params(PGconn *c, const char *sql, int n, const char *const *params)
{
    return check_result(c, pg_query_params(c, sql, n, params), PGRES_COMMAND_OK, "exec");
}

/* Queues 'data' (in nonblocking mode PQputCopyData() may refuse until the
 * socket drains). 0, or -1 on timeout or a send error. */
static int put_within(PGconn *c, const char *data, size_t len, long long deadline)
{
    while (len > 0) {
        /* PQputCopyData takes an int length: send in bounded pieces. */
        int piece = len > (1u << 20) ? (1 << 20) : (int)len;
        int r = PQputCopyData(c, data, piece);

        if (r < 0)
            return -1;
        if (r == 0) {
            if (wait_socket(c, POLLOUT, deadline) != 0 || PQflush(c) < 0)
                return -1;
            continue;
        }
        data += piece;
        len -= (size_t)piece;
    }
    return 0;
}

/* Ends the COPY: PQputCopyEnd() with 'errormsg' (NULL: success). */
static int end_within(PGconn *c, const char *errormsg, long long deadline)
{
    int r;

    while ((r = PQputCopyEnd(c, errormsg)) == 0)
        if (wait_socket(c, POLLOUT, deadline) != 0 || PQflush(c) < 0)
            return -1;
    return r == 1 ? 0 : -1;
}

static int copy_in(PGconn *c, const char *copy_sql, const char *data, size_t len, int quiet)
{
    long long deadline = now_ms() + settings.reply_timeout_ms;
    PGresult *r;
    int rc;

    if ((rc = check_result(c, pg_query(c, copy_sql), PGRES_COPY_IN, "copy start")) != 0)
        return rc;
    if (put_within(c, data, len, deadline) != 0) {
        if (PQstatus(c) == CONNECTION_OK && end_within(c, "send failed", deadline) != 0) {
            give_up(c, "copy", settings.reply_timeout_ms);
            return LJ_EUNAVAIL;
        }
    } else if (end_within(c, NULL, deadline) != 0) {
        log_error("pg", "copy end failed: %s", PQerrorMessage(c));
        give_up(c, "copy", settings.reply_timeout_ms);
        return LJ_EUNAVAIL;
    }
    r = collect_within(c, deadline, "copy", settings.reply_timeout_ms);
    return check_result_q(c, r, PGRES_COMMAND_OK, "copy", quiet);
}

int pg_copy_in(PGconn *c, const char *copy_sql, const char *data, size_t len)
{
    return copy_in(c, copy_sql, data, len, 0);
}

int pg_copy_quiet(PGconn *c, const char *copy_sql, const char *data, size_t len)
{
    return copy_in(c, copy_sql, data, len, 1);
}

/* The rows of a "COPY n" command tag. */
static long long copied_rows(const PGresult *r)
{
    const char *n = PQcmdTuples((PGresult *)r);

    return n && *n ? strtoll(n, NULL, 10) : 0;
}

int pg_copy_out(PGconn *c, const char *copy_sql, pg_copy_sink sink, void *arg, long long *rows)
{
    long long deadline;
    PGresult *r;
    char *data;
    int sink_rc = 0;
    int rc;
    int n;

    if ((rc = check_result(c, pg_query(c, copy_sql), PGRES_COPY_OUT, "copy out start")) != 0)
        return rc;
    for (;;) {
        deadline = now_ms() + settings.reply_timeout_ms;
        while ((n = PQgetCopyData(c, &data, 1)) == 0) {
            if (wait_socket(c, POLLIN, deadline) != 0 || !PQconsumeInput(c)) {
                give_up(c, "copy out", settings.reply_timeout_ms);
                return LJ_EUNAVAIL;
            }
        }
        if (n < 0)
            break;      /* -1: done, the result follows; -2: an error, likewise */
        /* After a refusal of the sink the rest is read and discarded:
         * libpq cannot end a COPY OUT early, and the connection stays. */
        if (sink_rc == 0)
            sink_rc = sink(arg, data, (size_t)n);
        PQfreemem(data);
    }
    r = collect_within(c, now_ms() + settings.reply_timeout_ms, "copy out",
                       settings.reply_timeout_ms);
    if (PQresultStatus(r) == PGRES_COMMAND_OK)
        *rows = copied_rows(r);
    rc = check_result(c, r, PGRES_COMMAND_OK, "copy out");
    return rc != 0 ? rc : sink_rc;
}
