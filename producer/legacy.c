#include "legacy.h"

#include <pthread.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "enrich.h"
#include "err.h"
#include "flowctl.h"
#include "log.h"
#include "metrics.h"
#include "pg.h"

enum kind { K_HEALTH, K_DEVICE, K_EVENT, K_KINDS };
enum state { S_QUEUED, S_WRITING, S_DROPPED };

typedef struct port port;

/* One queued upload. The loop thread that queued it owns the timer, 'late'
 * and the callbacks; a writer owns 'rc' and 'st' from S_WRITING until it
 * hands the job back through the port. */
typedef struct job {
    struct job *prev;       /* the queue (q.lock) */
    struct job *next;
    struct job *done_next;  /* the port's completion list (port lock) */
    port *port;
    enum kind kind;
    const void *what;       /* rec_batch, rep_device or rep_event */
    const char *id;         /* device reports: history stream_id */
    size_t records;
    long long queued_ms;    /* CLOCK_MONOTONIC */
    int state;              /* q.lock */
    int late;
    uv_timer_t timer;
    legacy_done_fn done;
    void *arg;
    int rc;
    store_stats st;
} job;

struct port {
    uv_async_t async;
    pthread_mutex_t lock;
    job *done_head;         /* handed back, for the loop (lock) */
    int pending;            /* loop only */
};

/* A writer's own PostgreSQL session. */
typedef struct writer {
    pthread_t thread;
    PGconn *pg;
    enrich_cache *owners;
    job **group;            /* room for --legacy-group-uploads */
} writer;

static struct {
    pthread_mutex_t lock;
    pthread_cond_t work;    /* idle writers: there is something to gather */
    pthread_cond_t more;    /* the gatherer: its group may be complete */
    job *head;
    job *tail;
    size_t n;
    size_t kind_n[K_KINDS];         /* queued uploads of each kind */
    size_t kind_records[K_KINDS];
    int gathering;          /* one writer is forming a group */
    int stop;
    const lj_config *cfg;
    writer *writers;
    int nwriters;
} q = {.lock = PTHREAD_MUTEX_INITIALIZER, .work = PTHREAD_COND_INITIALIZER};

static atomic_int aborting;     /* legacy_abort(): write nothing more */
static atomic_ullong n_groups, n_txns, n_uploads, n_poison, n_full, n_expired;
static atomic_ullong n_conflicts;
static atomic_llong n_queued, n_peak, n_inflight, n_writing;

static long long mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------------------
 * The queue (q.lock held)
 * ------------------------------------------------------------------------ */

static void unlink_job(job *j)
{
    if (j->prev)
        j->prev->next = j->next;
    else
        q.head = j->next;
    if (j->next)
        j->next->prev = j->prev;
    else
        q.tail = j->prev;
    j->prev = j->next = NULL;
    q.n--;
    q.kind_n[j->kind]--;
    q.kind_records[j->kind] -= j->records;
    atomic_fetch_sub(&n_queued, 1);
}

static void append_job(job *j)
{
    long long now;
    long long peak;

    j->prev = q.tail;
    j->next = NULL;
    if (q.tail)
        q.tail->next = j;
    else
        q.head = j;
    q.tail = j;
    q.n++;
    q.kind_n[j->kind]++;
    q.kind_records[j->kind] += j->records;
    now = atomic_fetch_add(&n_queued, 1) + 1;
    peak = atomic_load(&n_peak);
    while (now > peak && !atomic_compare_exchange_weak(&n_peak, &peak, now))
        ;
}

/* The head job's group is full: take_group() takes only its kind. */
static int group_complete(void)
{
    enum kind k = q.head->kind;

    return q.kind_n[k] >= (size_t)q.cfg->legacy_group_uploads ||
           q.kind_records[k] >= (size_t)q.cfg->legacy_group_records;
}

/* Moves the oldest job and the queued jobs of its kind after it, up to the
 * group limits, into 'group'. */
static size_t take_group(job **group)
{
    enum kind kind = q.head->kind;
    size_t records = 0;
    size_t n = 0;
    job *j = q.head;

    while (j && n < (size_t)q.cfg->legacy_group_uploads) {
        job *next = j->next;

        if (j->kind == kind) {
            if (n > 0 && records + j->records > (size_t)q.cfg->legacy_group_records)
                break;
            unlink_job(j);
            j->state = S_WRITING;
            atomic_fetch_add(&n_writing, 1);
            records += j->records;
            group[n++] = j;
        }
        j = next;
    }
    return n;
}

static void wait_until(pthread_cond_t *c, long long deadline_ms)
{
    struct timespec ts = {(time_t)(deadline_ms / 1000), (long)(deadline_ms % 1000) * 1000000};

    pthread_cond_timedwait(c, &q.lock, &ts);
}

/* Blocks until a group is formed; 0 when stopping with nothing queued. */
static size_t gather(job **group)
{
    size_t n = 0;

    pthread_mutex_lock(&q.lock);
    while (n == 0) {
        long long deadline;

        while (q.gathering || (q.head == NULL && !q.stop))
            pthread_cond_wait(&q.work, &q.lock);
        if (q.head == NULL)
            break;      /* stopping, and nothing left */
        q.gathering = 1;
        deadline = q.head->queued_ms + q.cfg->legacy_group_ms;
        while (q.head && !group_complete() && !q.stop && !atomic_load(&aborting) &&
               mono_ms() < deadline)
            wait_until(&q.more, deadline);
        if (q.head)     /* else every job expired meanwhile: wait again */
            n = take_group(group);
        q.gathering = 0;
        if (q.head || q.stop)
            pthread_cond_signal(&q.work);
    }
    pthread_mutex_unlock(&q.lock);
    return n;
}

/* ------------------------------------------------------------------------
 * Writing (writer threads)
 * ------------------------------------------------------------------------ */

static PGconn *writer_pg(writer *w)
{
    char err[256];

    if (w->pg && PQstatus(w->pg) != CONNECTION_OK) {
        PQfinish(w->pg);
        w->pg = NULL;
    }
    if (w->pg || atomic_load(&aborting))
        return w->pg;
    if ((w->pg = pg_connect(q.cfg->pg_dsn, "ljwx-producer-legacy", err, sizeof(err))) == NULL) {
        log_warn("legacy", "postgresql: %s", err);
        return NULL;
    }
    if (store_prepare(w->pg) != 0) {
        PQfinish(w->pg);
        w->pg = NULL;
    }
    return w->pg;
}

/* One transaction for the 'n' jobs of 'g' (all of one kind). On 0 each
 * job's 'st' holds its own counts, the first one the alerts. */
static int store_group(writer *w, job **g, size_t n, store_stats *st, size_t *each)
{
    PGconn *pg = writer_pg(w);
    const char **ids = NULL;
    void *arr = NULL;
    size_t i;
    int rc = LJ_ENOMEM;

    if (pg == NULL)
        return LJ_EUNAVAIL;
    if (g[0]->kind == K_HEALTH) {
        store_item *items = arr = malloc(n * sizeof(*items));

        for (i = 0; items && i < n; i++) {
            const rec_batch *b = g[i]->what;

            items[i] = (store_item){b->recs, b->n, NULL, -1, b->batch_id[0] ? b->batch_id : NULL};
        }
        if (items)
            rc = store_health_each(pg, w->owners, items, n, "optimized", st, each);
    } else if ((ids = malloc(n * sizeof(*ids))) != NULL) {
        for (i = 0; i < n; i++)
            ids[i] = g[i]->id;
        if (g[0]->kind == K_DEVICE) {
            rep_device *d = arr = malloc(n * sizeof(*d));

            for (i = 0; d && i < n; i++)
                d[i] = *(const rep_device *)g[i]->what;     /* shallow: borrowed */
            if (d)
                rc = store_device_batch(pg, w->owners, LEGACY_DEVICE_STREAM, d, ids, n, st,
                                        each);
        } else {
            rep_event *e = arr = malloc(n * sizeof(*e));

            for (i = 0; e && i < n; i++)
                e[i] = *(const rep_event *)g[i]->what;
            if (e)
                rc = store_event_batch(pg, w->owners, e, ids, n, st, each);
        }
    }
    free(arr);
    free(ids);
    if (rc == LJ_EUNAVAIL && w->pg && PQstatus(w->pg) != CONNECTION_OK) {
        PQfinish(w->pg);
        w->pg = NULL;
    }
    return rc;
}

#define CONFLICT_TRIES 3     /* tries of a group PostgreSQL aborts as a conflict */

/* store_group(), tried again while PostgreSQL aborts it as a conflict
 * (SQLSTATE class 40: deadlock, serialization), at most CONFLICT_TRIES. */
static int store_group_retrying(writer *w, job **g, size_t n, store_stats *st, size_t *each)
{
    int tries = 0;
    int rc;

    do {
        atomic_fetch_add(&n_txns, 1);
        rc = atomic_load(&aborting) ? LJ_EUNAVAIL : store_group(w, g, n, st, each);
        if (rc == LJ_ECONFLICT)
            atomic_fetch_add(&n_conflicts, 1);
    } while (rc == LJ_ECONFLICT && ++tries < CONFLICT_TRIES);
    return rc;
}

/* Stores 'g'; a group PostgreSQL refuses is split in halves until the
 * refused upload is alone (as the consumer isolates a poison entry). */
static void write_group(writer *w, job **g, size_t n, size_t *each)
{
    store_stats st;
    size_t i;
    int rc = store_group_retrying(w, g, n, &st, each);

    if (rc == LJ_EPOISON && n > 1) {
        write_group(w, g, n / 2, each);
        write_group(w, g + n / 2, n - n / 2, each);
        return;
    }
    if (rc == LJ_EPOISON)
        atomic_fetch_add(&n_poison, 1);
    for (i = 0; i < n; i++) {
        g[i]->rc = rc;
        if (rc != 0)
            continue;
        g[i]->st.inserted = each[i];
        g[i]->st.duplicates = (g[i]->kind == K_HEALTH ? g[i]->records : 1) - each[i];
        g[i]->st.unbound = i == 0 ? st.unbound : 0;
    }
    if (rc == 0) {          /* the group's alerts go with its first upload */
        g[0]->st.alerts = st.alerts;
        g[0]->st.nalerts = st.nalerts;
    }
}

/* Groups lock rows in one order (their unique keys), so two groups holding
 * the same rows wait for each other instead of deadlocking. Health rows
 * are merged in key order by store.c; a device report locks its device's
 * latest row; an event its (device, type, time). */
static int job_cmp(const void *pa, const void *pb)
{
    const job *a = *(job *const *)pa;
    const job *b = *(job *const *)pb;
    int c;

    if (a->kind == K_DEVICE) {
        const rep_device *x = a->what;
        const rep_device *y = b->what;

        return (c = strcmp(x->device_sn, y->device_sn)) ? c : strcmp(a->id, b->id);
    }
    if (a->kind == K_EVENT) {
        const rep_event *x = a->what;
        const rep_event *y = b->what;

        if ((c = strcmp(x->device_sn, y->device_sn)) || (c = strcmp(x->event_type, y->event_type)))
            return c;
        return (x->ts_ms > y->ts_ms) - (x->ts_ms < y->ts_ms);
    }
    return 0;
}

/* One breaker outcome per group (its uploads share one fate): a refusal of
 * the data is PostgreSQL answering; nothing is reported for a group never
 * written (shutdown). */
static void report_group(job **g, size_t n)
{
    int ok = 1;
    size_t i;

    if (atomic_load(&aborting))
        return;
    for (i = 0; i < n; i++)
        ok &= g[i]->rc == 0 || g[i]->rc == LJ_EPOISON;
    breaker_report(flowctl_breaker(FLOWCTL_PG), ok, uv_hrtime());
}

/* Hands 'j' back to its loop. The send is made under the port's lock, so
 * once the loop has taken the job no writer touches the port again. */
static void hand_back(job *j)
{
    port *p = j->port;

    pthread_mutex_lock(&p->lock);
    j->done_next = p->done_head;
    p->done_head = j;
    uv_async_send(&p->async);
    pthread_mutex_unlock(&p->lock);
}

static void *writer_main(void *arg)
{
    writer *w = arg;
    size_t *each = malloc((size_t)q.cfg->legacy_group_uploads * sizeof(*each));
    size_t n;
    size_t i;

    while ((n = gather(w->group)) > 0) {
        atomic_fetch_add(&n_groups, 1);
        atomic_fetch_add(&n_uploads, n);
        if (each == NULL) {
            for (i = 0; i < n; i++)
                w->group[i]->rc = LJ_ENOMEM;
        } else {
            qsort(w->group, n, sizeof(*w->group), job_cmp);
            write_group(w, w->group, n, each);
            report_group(w->group, n);
        }
        for (i = 0; i < n; i++) {
            hand_back(w->group[i]);
            atomic_fetch_sub(&n_writing, 1);
        }
    }
    free(each);
    return NULL;
}

/* ------------------------------------------------------------------------
 * Loop side
 * ------------------------------------------------------------------------ */

static void on_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

/* Runs 'done' and frees 'j' (its timer stopped or fired). */
static void finish(job *j)
{
    j->port->pending--;
    atomic_fetch_sub(&n_inflight, 1);
    j->done(j->rc, &j->st, j->late, j->arg);
    store_stats_cleanup(&j->st);
    uv_close((uv_handle_t *)&j->timer, on_timer_closed);
}

/* Only a job still queued is answered at its deadline (and never written);
 * one being written waits for its outcome, which pg.h bounds. */
static void on_deadline(uv_timer_t *t)
{
    job *j = t->data;
    int dropped = 0;

    pthread_mutex_lock(&q.lock);
    if (j->state == S_QUEUED) {
        unlink_job(j);
        j->state = S_DROPPED;
        dropped = 1;
    }
    pthread_mutex_unlock(&q.lock);
    if (dropped) {
        atomic_fetch_add(&n_expired, 1);
        j->late = 1;
        finish(j);
    }
}

static void on_handed_back(uv_async_t *a)
{
    port *p = a->data;
    job *list;

    pthread_mutex_lock(&p->lock);
    list = p->done_head;
    p->done_head = NULL;
    pthread_mutex_unlock(&p->lock);
    while (list) {
        job *j = list;

        list = j->done_next;
        uv_timer_stop(&j->timer);
        finish(j);
    }
}

static int enqueue(uv_loop_t *loop, enum kind kind, const void *what, const char *id,
                   size_t records, unsigned timeout_ms, legacy_done_fn done, void *arg)
{
    port *p = loop->data;
    int full;
    job *j;

    if (p == NULL || q.cfg == NULL)
        return LJ_EUNAVAIL;
    if ((j = calloc(1, sizeof(*j))) == NULL)
        return LJ_ENOMEM;
    j->port = p;
    j->kind = kind;
    j->what = what;
    j->id = id;
    j->records = records;
    j->queued_ms = mono_ms();
    j->done = done;
    j->arg = arg;
    j->rc = LJ_EUNAVAIL;
    pthread_mutex_lock(&q.lock);
    full = q.stop || q.n >= (size_t)q.cfg->legacy_queue;
    if (!full) {
        append_job(j);
        if (!q.gathering)
            pthread_cond_signal(&q.work);
        else if (group_complete())
            pthread_cond_signal(&q.more);
    }
    pthread_mutex_unlock(&q.lock);
    if (full) {
        atomic_fetch_add(&n_full, 1);
        free(j);
        return LJ_EUNAVAIL;
    }
    p->pending++;
    atomic_fetch_add(&n_inflight, 1);
    uv_timer_init(loop, &j->timer);
    j->timer.data = j;
    uv_timer_start(&j->timer, on_deadline, timeout_ms, 0);
    return 0;
}

int legacy_store(uv_loop_t *loop, const rec_batch *b, unsigned timeout_ms, legacy_done_fn done,
                 void *arg)
{
    return enqueue(loop, K_HEALTH, b, NULL, b->n, timeout_ms, done, arg);
}

int legacy_store_device(uv_loop_t *loop, const rep_device *d, const char *id,
                        unsigned timeout_ms, legacy_done_fn done, void *arg)
{
    return enqueue(loop, K_DEVICE, d, id, 1, timeout_ms, done, arg);
}

int legacy_store_event(uv_loop_t *loop, const rep_event *e, unsigned timeout_ms,
                       legacy_done_fn done, void *arg)
{
    return enqueue(loop, K_EVENT, e, NULL, 1, timeout_ms, done, arg);
}

int legacy_writing(void)
{
    return (int)atomic_load(&n_writing);
}

int legacy_loop_open(uv_loop_t *loop)
{
    port *p = calloc(1, sizeof(*p));

    if (p == NULL)
        return -1;
    if (pthread_mutex_init(&p->lock, NULL) != 0 ||
        uv_async_init(loop, &p->async, on_handed_back) != 0) {
        free(p);
        return -1;
    }
    p->async.data = p;
    loop->data = p;
    return 0;
}

static void on_port_closed(uv_handle_t *h)
{
    port *p = h->data;

    pthread_mutex_destroy(&p->lock);
    free(p);
}

void legacy_loop_close(uv_loop_t *loop)
{
    port *p = loop->data;

    if (p == NULL)
        return;
    loop->data = NULL;
    uv_close((uv_handle_t *)&p->async, on_port_closed);
}

int legacy_pending(uv_loop_t *loop)
{
    port *p = loop->data;

    return p ? p->pending : 0;
}

/* ------------------------------------------------------------------------
 * Start and stop
 * ------------------------------------------------------------------------ */

int legacy_start(const lj_config *cfg)
{
    pthread_condattr_t ca;
    int i;

    q.cfg = cfg;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&q.more, &ca);
    pthread_condattr_destroy(&ca);
    if ((q.writers = calloc((size_t)cfg->legacy_writers, sizeof(*q.writers))) == NULL)
        return -1;
    for (i = 0; i < cfg->legacy_writers; i++) {
        writer *w = &q.writers[i];

        w->group = malloc((size_t)cfg->legacy_group_uploads * sizeof(*w->group));
        w->owners = enrich_new(65536, cfg->enrich_ttl_ms);
        if (w->group == NULL || w->owners == NULL ||
            pthread_create(&w->thread, NULL, writer_main, w) != 0) {
            free(w->group);
            enrich_free(w->owners);
            break;
        }
        q.nwriters++;
    }
    if (q.nwriters == cfg->legacy_writers)
        return 0;
    log_error("legacy", "could not start %d writer threads", cfg->legacy_writers);
    legacy_stop();
    return -1;
}

/* Every queued job back to its loop, never written (the writers may all be
 * busy with groups that finish later). */
void legacy_abort(void)
{
    atomic_store(&aborting, 1);
    pthread_mutex_lock(&q.lock);
    while (q.head) {
        job *j = q.head;

        unlink_job(j);
        j->state = S_DROPPED;
        j->rc = LJ_EUNAVAIL;
        hand_back(j);
    }
    pthread_cond_broadcast(&q.more);
    pthread_mutex_unlock(&q.lock);
}

void legacy_stop(void)
{
    int i;

    pthread_mutex_lock(&q.lock);
    q.stop = 1;
    pthread_cond_broadcast(&q.work);
    pthread_cond_broadcast(&q.more);
    pthread_mutex_unlock(&q.lock);
    for (i = 0; i < q.nwriters; i++) {
        writer *w = &q.writers[i];

        pthread_join(w->thread, NULL);
        if (w->pg)
            PQfinish(w->pg);
        enrich_free(w->owners);
        free(w->group);
    }
    free(q.writers);
    q.writers = NULL;
    q.nwriters = 0;
}

void legacy_counts_get(legacy_counts *out)
{
    out->groups = atomic_load(&n_groups);
    out->transactions = atomic_load(&n_txns);
    out->uploads = atomic_load(&n_uploads);
    out->poison = atomic_load(&n_poison);
    out->conflicts = atomic_load(&n_conflicts);
    out->queue_full = atomic_load(&n_full);
    out->expired = atomic_load(&n_expired);
    out->queued = atomic_load(&n_queued);
    out->queue_peak = atomic_load(&n_peak);
    out->inflight = atomic_load(&n_inflight);
}

#define COUNTER(f, name, help) {name, "counter", help, offsetof(legacy_counts, f), 0}
#define GAUGE(f, name, help) {name, "gauge", help, offsetof(legacy_counts, f), 1}

int legacy_render_prometheus(lj_buf *out)
{
    static const struct {
        const char *name;
        const char *type;
        const char *help;
        size_t offset;      /* in legacy_counts */
        int is_signed;      /* long long, else unsigned long long */
    } m[] = {
        COUNTER(groups, "ljwx_legacy_groups_total", "Legacy-path group commits formed."),
        COUNTER(transactions, "ljwx_legacy_transactions_total",
                "Legacy-path transactions: one per group, more when a refused group is split "
                "or a conflict retried."),
        COUNTER(uploads, "ljwx_legacy_uploads_total", "Legacy-path uploads taken into groups."),
        COUNTER(poison, "ljwx_legacy_poison_total",
                "Legacy-path uploads PostgreSQL refused (400)."),
        COUNTER(conflicts, "ljwx_legacy_conflicts_total",
                "Legacy-path transactions PostgreSQL aborted as a conflict (deadlock, "
                "serialization); the group is tried again."),
        COUNTER(queue_full, "ljwx_legacy_queue_full_total",
                "Legacy-path uploads refused at once: --legacy-queue full (503)."),
        COUNTER(expired, "ljwx_legacy_expired_total",
                "Legacy-path uploads still queued at their deadline: never written (503)."),
        GAUGE(queued, "ljwx_legacy_queued", "Legacy-path uploads waiting for a writer."),
        GAUGE(queue_peak, "ljwx_legacy_queue_peak",
              "Most legacy-path uploads ever waiting at once."),
        GAUGE(inflight, "ljwx_legacy_inflight", "Legacy-path uploads queued or being written."),
    };
    legacy_counts c;
    size_t i;
    int rc = 0;

    legacy_counts_get(&c);
    for (i = 0; i < sizeof(m) / sizeof(m[0]) && rc == 0; i++) {
        const char *at = (const char *)&c + m[i].offset;
        double v = m[i].is_signed ? (double)*(const long long *)at
                                  : (double)*(const unsigned long long *)at;

        metrics_write_head(out, m[i].name, m[i].type, m[i].help);
        rc = metrics_write_value(out, m[i].name, "", v);
    }
    return rc;
}
