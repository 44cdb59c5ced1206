/* outbox.h -- the alerts to deliver, in PostgreSQL (migration 007).
 *
 * t_alert_info rows with status NEW are the outbox; t_alert_delivery logs
 * each attempt per target; t_notify_route says which channels a level and
 * organisation get. A worker claims alerts with a lease (claimed_until,
 * claimed_by = its name) taken with FOR UPDATE SKIP LOCKED, so notifiers
 * never work on one alert at once; the lease is renewed before each alert
 * and every later write checks claimed_by, so an alert whose lease ran out
 * (the worker stalled) is left alone. Each call is one autocommit
 * statement with unnamed parameters: no session state, so PgBouncer in
 * transaction pooling is fine. Worker thread only (blocking libpq, pg.h);
 * every function returns 0 or a pg_failure() code, logged.
 */
#ifndef LJ_NOTIFIER_OUTBOX_H
#define LJ_NOTIFIER_OUTBOX_H

#include <libpq-fe.h>

#include "alert.h"
#include "channel.h"

/* The state of one target of an alert, from t_alert_delivery. */
typedef struct outbox_delivery {
    char channel[32];
    int attempts;
    channel_verdict state;  /* DELIVERED, DEAD, or RETRY (PENDING) */
    long wait_ms;           /* PENDING: ms until its next attempt (0: due) */
} outbox_delivery;

#define OUTBOX_MAX_DELIVERIES CHANNEL_MAX_TARGETS

/* Claims up to 'max' NEW alerts no lease holds for 'lease_ms' as 'me',
 * into 'out' in id order; '*n' says how many. */
int outbox_claim(PGconn *c, const char *me, int max, int lease_ms, notify_alert *out, int *n);

/* Renews the lease of 'a' for 'lease_ms' and reads the deliveries already
 * logged for it (at most OUTBOX_MAX_DELIVERIES) into 'out', '*n' of them.
 * '*held' 1 when 'me' still holds it; 0 when another notifier (or an
 * operator) took it over ('*n' is then 0). */
int outbox_renew(PGconn *c, const char *me, const notify_alert *a, int lease_ms,
                 outbox_delivery *out, int *n, int *held);

/* When an alert of 'a's device and type, no less severe, was raised
 * within 'window_s' of it (earlier id, status NEW, NOTIFIED or FAILED),
 * marks 'a' SUPPRESSED, counts it on that one and sets '*suppressed' 1. */
int outbox_suppress(PGconn *c, const char *me, const notify_alert *a, int window_s,
                    int *suppressed);

/* Sets bit (1 << kind) in '*kinds' for each channel kind the route of
 * 'a's level and organisation selects. */
int outbox_route(PGconn *c, const notify_alert *a, unsigned *kinds);

/* Logs one attempt of 'a' to 'channel': 'state' (DELIVERED, RETRY:
 * PENDING with the next attempt in 'next_ms', DEAD) and 'why'. */
int outbox_record(PGconn *c, const notify_alert *a, const char *channel, channel_verdict state,
                  const char *why, long next_ms);

/* Moves 'a' to 'status' (NOTIFIED, FAILED, UNROUTED); or, for "NEW",
 * releases it until its next attempt in 'next_ms'. Only while 'me' holds
 * it; '*held' as outbox_renew(). */
int outbox_finish(PGconn *c, const char *me, const notify_alert *a, const char *status,
                  long next_ms, int *held);

/* Gives back every alert 'me' still holds (claimed, not finished: a stop
 * in the middle of a batch), so other notifiers take them at once instead
 * of after the lease. */
int outbox_release(PGconn *c, const char *me);

/* NEW alerts raised more than 'max_age_s' ago and never attempted become
 * EXPIRED; '*n' counts them. */
int outbox_expire(PGconn *c, int max_age_s, long *n);

#endif
