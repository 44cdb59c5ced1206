#include "readahead.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "err.h"
#include "log.h"
#include "rconn.h"

typedef enum ra_state { RA_IDLE, RA_WANTED, RA_READY, RA_QUIT } ra_state;

struct readahead {
    const worker *w;
    char stream[STREAM_NAME_MAX];
    char group[STREAM_NAME_MAX];
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    ra_state state;         /* under 'mu' */
    int count;              /* RA_WANTED: COUNT of the read */
    int rc;                 /* RA_READY: the read's result */
    batch b;                /* RA_READY: what was read */
    int64_t read_ms;        /* RA_READY: when (monotonic) */
    rconn *redis;           /* the thread's own; NULL while disconnected */
};

static int64_t now_ms(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static int ensure_redis(readahead *ra)
{
    rconn_opts o;
    char err[256];

    if (ra->redis)
        return 0;
    worker_redis_opts(ra->w, &o);
    if ((ra->redis = rconn_open(&o, err, sizeof(err))) == NULL) {
        log_warn("readahead", "redis %s", err);
        return LJ_EUNAVAIL;
    }
    return 0;
}

static void drop_redis(readahead *ra)
{
    rconn_close(ra->redis);
    ra->redis = NULL;
}

/* One XREADGROUP of new entries into 'out', decoded. */
static int read_new(readahead *ra, int count, batch *out)
{
    redisReply *r;
    int rc;

    if ((rc = ensure_redis(ra)) != 0)
        return rc;
    if ((r = worker_xreadgroup(ra->redis, ra->w, ra->group, ra->stream, count, ">")) == NULL) {
        log_warn("readahead", "XREADGROUP failed: %s", rconn_errstr(ra->redis));
        drop_redis(ra);
        return LJ_EUNAVAIL;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        log_warn("readahead", "XREADGROUP refused: %s", r->str);
        drop_redis(ra);
        rc = LJ_EREDIS;
    } else if ((rc = batch_from_reply(r, out)) == 0) {
        batch_decode_all(out);
    }
    freeReplyObject(r);
    return rc;
}

static void *run(void *arg)
{
    readahead *ra = arg;

    pthread_mutex_lock(&ra->mu);
    for (;;) {
        while (ra->state == RA_IDLE || ra->state == RA_READY)
            pthread_cond_wait(&ra->cv, &ra->mu);
        if (ra->state == RA_QUIT)
            break;
        pthread_mutex_unlock(&ra->mu);
        ra->rc = read_new(ra, ra->count, &ra->b);
        ra->read_ms = now_ms();
        pthread_mutex_lock(&ra->mu);
        if (ra->state == RA_WANTED)
            ra->state = RA_READY;
        pthread_cond_broadcast(&ra->cv);
    }
    pthread_mutex_unlock(&ra->mu);
    drop_redis(ra);
    return NULL;
}

readahead *readahead_start(const worker *w, const char *stream, const char *group)
{
    readahead *ra = calloc(1, sizeof(*ra));

    if (ra == NULL)
        return NULL;
    ra->w = w;
    snprintf(ra->stream, sizeof(ra->stream), "%s", stream);
    snprintf(ra->group, sizeof(ra->group), "%s", group);
    batch_init(&ra->b, w->kind);
    if (pthread_mutex_init(&ra->mu, NULL) != 0)
        goto no_mutex;
    if (pthread_cond_init(&ra->cv, NULL) != 0)
        goto no_cond;
    if (pthread_create(&ra->thread, NULL, run, ra) != 0)
        goto no_thread;
    return ra;
no_thread:
    pthread_cond_destroy(&ra->cv);
no_cond:
    pthread_mutex_destroy(&ra->mu);
no_mutex:
    free(ra);
    return NULL;
}

void readahead_want(readahead *ra, int count)
{
    pthread_mutex_lock(&ra->mu);
    if (ra->state == RA_IDLE) {
        ra->count = count;
        ra->state = RA_WANTED;
        pthread_cond_broadcast(&ra->cv);
    }
    pthread_mutex_unlock(&ra->mu);
}

int readahead_busy(readahead *ra)
{
    int busy;

    pthread_mutex_lock(&ra->mu);
    busy = ra->state != RA_IDLE;
    pthread_mutex_unlock(&ra->mu);
    return busy;
}

/* Waits while a read is under way; 1 when a batch is ready (under 'mu'). */
static int wait_ready(readahead *ra)
{
    while (ra->state == RA_WANTED)
        pthread_cond_wait(&ra->cv, &ra->mu);
    return ra->state == RA_READY;
}

int readahead_take(readahead *ra, batch *out)
{
    int rc = LJ_EUNAVAIL;

    pthread_mutex_lock(&ra->mu);
    if (wait_ready(ra)) {
        rc = ra->rc;
        /* Held past half the claim idle limit (the worker was busy: a
         * long store, its upkeep): others may have claimed it meanwhile. */
        if (rc == 0 && now_ms() - ra->read_ms > ra->w->cfg->claim_idle_ms / 2)
            rc = LJ_ESTALE;
        batch_cleanup(out);
        *out = ra->b;
        batch_init(&ra->b, ra->w->kind);
        ra->state = RA_IDLE;
    }
    pthread_mutex_unlock(&ra->mu);
    if (rc != 0)
        batch_cleanup(out);
    return rc;
}

void readahead_drop(readahead *ra)
{
    pthread_mutex_lock(&ra->mu);
    if (wait_ready(ra)) {
        batch_cleanup(&ra->b);
        batch_init(&ra->b, ra->w->kind);
        ra->state = RA_IDLE;
    }
    pthread_mutex_unlock(&ra->mu);
}

void readahead_stop(readahead *ra)
{
    if (ra == NULL)
        return;
    readahead_drop(ra);
    pthread_mutex_lock(&ra->mu);
    ra->state = RA_QUIT;
    pthread_cond_broadcast(&ra->cv);
    pthread_mutex_unlock(&ra->mu);
    pthread_join(ra->thread, NULL);
    batch_cleanup(&ra->b);
    pthread_cond_destroy(&ra->cv);
    pthread_mutex_destroy(&ra->mu);
    free(ra);
}
