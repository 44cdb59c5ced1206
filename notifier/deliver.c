#include "deliver.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "log.h"
#include "outbox.h"
#include "pg.h"
#include "text.h"

#define EXPIRE_EVERY_MS 60000L
#define RECONNECT_MS 1000

/* What became of the selected targets of one alert. */
typedef struct tally {
    int selected;
    int delivered;
    int dead;
    int pending;
    long next_ms;       /* earliest pending retry */
} tally;

static long long now_ms(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Sleeps about 'ms', waking early when asked to stop. */
static void nap(const deliverer *d, long ms)
{
    while (ms > 0 && !atomic_load(d->stop)) {
        long step = ms < 100 ? ms : 100;

        usleep((useconds_t)step * 1000);
        ms -= step;
    }
}

void deliver_init(deliverer *d, int index, const lj_config *cfg, channel_set *channels,
                  deliver_stats *stats, atomic_int *stop)
{
    char host[64] = "host";

    memset(d, 0, sizeof(*d));
    d->index = index;
    d->cfg = cfg;
    d->channels = channels;
    d->stats = stats;
    d->stop = stop;
    gethostname(host, sizeof(host) - 1);
    snprintf(d->me, sizeof(d->me), "%s:%ld:%d", host, (long)getpid(), index);
    d->seed = (unsigned)getpid() * 2654435761u + (unsigned)index;
}

static const outbox_delivery *find_delivery(const outbox_delivery *ds, int n, const char *name)
{
    int i;

    for (i = 0; i < n; i++)
        if (strcmp(ds[i].channel, name) == 0)
            return &ds[i];
    return NULL;
}

static void count_attempt(channel_target *t, channel_verdict v, long long t0)
{
    metrics_hist_observe(&t->stats.seconds, (double)(now_ms() - t0) / 1000.0);
    atomic_fetch_add(&t->stats.attempts, 1);
    if (v == CHANNEL_DELIVERED)
        atomic_fetch_add(&t->stats.delivered, 1);
    else if (v == CHANNEL_RETRY)
        atomic_fetch_add(&t->stats.retries, 1);
    else
        atomic_fetch_add(&t->stats.dead, 1);
}

/* One POST of 'a' to 't', its verdict after the retry budget, the next
 * attempt's delay in '*next_ms' and the reason in 'why'. */
static channel_verdict post_once(deliverer *d, post_client *pc, channel_target *t,
                                 const notify_alert *a, int attempts, long *next_ms, char *why,
                                 size_t whylen)
{
    const char *type;
    channel_verdict v;
    long long t0 = now_ms();
    lj_buf body;
    int rc;

    lj_buf_init(&body);
    *next_ms = 0;
    if ((rc = channel_body(d->channels, t, a, &body, &type)) != 0) {
        snprintf(why, whylen, "body: %s", lj_strerror(rc));
        v = CHANNEL_RETRY;
    } else {
        rc = post_send(pc, t->url, type, t->kind == CHANNEL_WEBHOOK ? a->id : NULL, body.data,
                       body.len, &d->reply);
        v = channel_judge(t->kind, rc, &d->reply, why, whylen);
    }
    lj_buf_cleanup(&body);
    if (v == CHANNEL_RETRY && attempts >= d->cfg->notify_max_attempts) {
        size_t used = strlen(why);

        snprintf(why + used, whylen - used, " (gave up after %d attempts)", attempts);
        v = CHANNEL_DEAD;
    }
    if (v == CHANNEL_RETRY)
        *next_ms = text_backoff_ms(attempts, d->cfg->notify_backoff_ms,
                                   d->cfg->notify_backoff_max_ms, d->reply.retry_after_s,
                                   (double)rand_r(&d->seed) / ((double)RAND_MAX + 1.0));
    count_attempt(t, v, t0);
    return v;
}

/* Tries target 't' of 'a' unless its delivery log says it is done or not
 * yet due; adds the outcome to '*ty'. */
static int try_target(deliverer *d, PGconn *c, post_client *pc, channel_target *t,
                      const notify_alert *a, const outbox_delivery *prev, tally *ty)
{
    char why[192] = "";
    channel_verdict v;
    long next_ms;
    int attempts = prev ? prev->attempts + 1 : 1;
    int rc;

    ty->selected++;
    if (prev && prev->state != CHANNEL_RETRY) {
        ty->delivered += prev->state == CHANNEL_DELIVERED;
        ty->dead += prev->state == CHANNEL_DEAD;
        return 0;
    }
    if (prev && prev->wait_ms > 0) {
        next_ms = prev->wait_ms;
        v = CHANNEL_RETRY;
    } else {
        v = post_once(d, pc, t, a, attempts, &next_ms, why, sizeof(why));
        if ((rc = outbox_record(c, a, t->name, v, why, next_ms)) != 0)
            return rc;
        if (v == CHANNEL_DELIVERED)
            log_info("deliver", "delivered alert=%s device=%s channel=%s host=%s attempts=%d",
                     a->id, a->device_sn, t->name, t->host, attempts);
        else
            log_warn("deliver", "%s alert=%s device=%s channel=%s host=%s attempts=%d "
                     "retry_in_ms=%ld: %s", v == CHANNEL_DEAD ? "dead letter" : "failed", a->id,
                     a->device_sn, t->name, t->host, attempts, next_ms, why);
    }
    ty->delivered += v == CHANNEL_DELIVERED;
    ty->dead += v == CHANNEL_DEAD;
    if (v == CHANNEL_RETRY) {
        if (ty->pending == 0 || next_ms < ty->next_ms)
            ty->next_ms = next_ms;
        ty->pending++;
    }
    return 0;
}

static const char *status_of(const tally *ty)
{
    if (ty->selected == 0)
        return "UNROUTED";
    if (ty->pending > 0)
        return "NEW";
    return ty->dead > 0 ? "FAILED" : "NOTIFIED";
}

static void count_outcome(deliverer *d, const char *status)
{
    if (strcmp(status, "NOTIFIED") == 0)
        atomic_fetch_add(&d->stats->notified, 1);
    else if (strcmp(status, "FAILED") == 0)
        atomic_fetch_add(&d->stats->failed, 1);
    else if (strcmp(status, "UNROUTED") == 0)
        atomic_fetch_add(&d->stats->unrouted, 1);
}

/* Sends 'a' to every selected target (see deliver.h). */
static int handle_alert(deliverer *d, PGconn *c, post_client *pc, const notify_alert *a)
{
    outbox_delivery prev[OUTBOX_MAX_DELIVERIES];
    tally ty = {0, 0, 0, 0, 0};
    const char *status;
    unsigned kinds;
    int nprev;
    int held;
    int sup;
    int rc;
    int i;

    if ((rc = outbox_renew(c, d->me, a, d->cfg->notify_lease_ms, prev, &nprev, &held)) != 0)
        return rc;
    if (!held)
        goto lost;
    if (nprev == 0) {
        if ((rc = outbox_suppress(c, d->me, a, d->cfg->notify_suppress_s, &sup)) != 0)
            return rc;
        if (sup) {
            atomic_fetch_add(&d->stats->suppressed, 1);
            log_info("deliver", "suppressed alert=%s device=%s type=%s (a repeat)", a->id,
                     a->device_sn, a->type);
            return 0;
        }
    }
    if ((rc = outbox_route(c, a, &kinds)) != 0)
        return rc;
    for (i = 0; i < d->channels->n && !atomic_load(d->stop); i++) {
        channel_target *t = &d->channels->targets[i];

        if ((kinds & (1u << t->kind)) &&
            (rc = try_target(d, c, pc, t, a, find_delivery(prev, nprev, t->name), &ty)) != 0)
            return rc;
    }
    if (atomic_load(d->stop) && i < d->channels->n)
        return 0;   /* the lease runs out; another notifier (or this one again) goes on */
    status = status_of(&ty);
    if ((rc = outbox_finish(c, d->me, a, status, ty.next_ms, &held)) != 0)
        return rc;
    if (!held)
        goto lost;
    count_outcome(d, status);
    return 0;
lost:
    atomic_fetch_add(&d->stats->lost_leases, 1);
    log_warn("deliver", "alert=%s: lease lost to another notifier, left to it", a->id);
    return 0;
}

/* One round: claim a batch and handle it. '*n' says how many were claimed. */
static int round_once(deliverer *d, PGconn *c, post_client *pc, notify_alert *batch, int *n)
{
    int rc;
    int i;

    if ((rc = outbox_claim(c, d->me, d->cfg->notify_batch, d->cfg->notify_lease_ms, batch, n)) !=
        0)
        return rc;
    atomic_fetch_add(&d->stats->claimed, (unsigned long long)*n);
    for (i = 0; i < *n && !atomic_load(d->stop); i++)
        if ((rc = handle_alert(d, c, pc, &batch[i])) != 0)
            return rc;
    return 0;
}

static void expire_old(deliverer *d, PGconn *c)
{
    long n = 0;

    if (outbox_expire(c, d->cfg->notify_max_age_s, &n) == 0 && n > 0) {
        atomic_fetch_add(&d->stats->expired, (unsigned long long)n);
        log_warn("deliver", "expired=%ld alerts older than %d s were never sent", n,
                 d->cfg->notify_max_age_s);
    }
}

/* Connects, retrying every second until it works or '*stop'. */
static PGconn *connect_pg(deliverer *d)
{
    char err[256];
    PGconn *c;

    while (!atomic_load(d->stop)) {
        if ((c = pg_connect(d->cfg->pg_dsn, "ljwx-notifier", err, sizeof(err))) != NULL) {
            atomic_store(&d->pg_up, 1);
            return c;
        }
        log_warn("deliver", "worker %d: PostgreSQL: %s; retrying", d->index, err);
        nap(d, RECONNECT_MS);
    }
    return NULL;
}

void *deliver_thread(void *arg)
{
    deliverer *d = arg;
    notify_alert *batch = calloc((size_t)d->cfg->notify_batch, sizeof(*batch));
    post_client *pc = post_client_new(d->cfg->notify_timeout_ms,
                                      d->cfg->notify_connect_timeout_ms);
    long long next_expire = 0;
    PGconn *c = NULL;
    int n;

    if (batch == NULL || pc == NULL) {
        log_error("deliver", "worker %d: out of memory", d->index);
        atomic_store(d->stop, 1);
        goto out;
    }
    while (!atomic_load(d->stop)) {
        if (c == NULL && (c = connect_pg(d)) == NULL)
            break;
        if (now_ms() >= next_expire) {
            expire_old(d, c);
            next_expire = now_ms() + EXPIRE_EVERY_MS;
        }
        n = 0;
        if (round_once(d, c, pc, batch, &n) != 0 && PQstatus(c) != CONNECTION_OK) {
            atomic_store(&d->pg_up, 0);
            PQfinish(c);
            c = NULL;
            nap(d, RECONNECT_MS);
            continue;
        }
        if (n < d->cfg->notify_batch)
            nap(d, d->cfg->notify_poll_ms);
    }
out:
    if (c && PQstatus(c) == CONNECTION_OK)
        outbox_release(c, d->me);
    PQfinish(c);
    post_client_free(pc);
    free(batch);
    return NULL;
}
