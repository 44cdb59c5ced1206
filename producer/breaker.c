#include "breaker.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "log.h"

#define MS 1000000ull

struct breaker {
    pthread_mutex_t mu;
    char name[BREAKER_NAME_MAX];
    unsigned threshold;
    uint64_t base_cooldown_ns;
    uint64_t max_cooldown_ns;
    /* Written under 'mu', read without it on the fast path: a closed
     * breaker with no failure costs two atomic loads per call. */
    _Atomic breaker_state state;
    atomic_uint failures;       /* consecutive */
    uint64_t cooldown_ns;       /* of the current or last opening */
    uint64_t open_until;
    uint64_t probe_start;       /* half_open: when the probe was let through */
    uint64_t opens;
    uint64_t refused;
};

breaker *breaker_new(const char *name, unsigned failures, unsigned cooldown_ms,
                     unsigned max_cooldown_ms)
{
    breaker *b = calloc(1, sizeof(*b));

    if (b == NULL)
        return NULL;
    pthread_mutex_init(&b->mu, NULL);
    snprintf(b->name, sizeof(b->name), "%s", name);
    b->threshold = failures;
    b->base_cooldown_ns = cooldown_ms * MS;
    b->max_cooldown_ns = (max_cooldown_ms > cooldown_ms ? max_cooldown_ms : cooldown_ms) * MS;
    b->cooldown_ns = b->base_cooldown_ns;
    return b;
}

void breaker_free(breaker *b)
{
    if (b == NULL)
        return;
    pthread_mutex_destroy(&b->mu);
    free(b);
}

void breaker_reset(breaker *b, const char *name)
{
    pthread_mutex_lock(&b->mu);
    snprintf(b->name, sizeof(b->name), "%s", name);
    b->state = BREAKER_CLOSED;
    b->failures = 0;
    b->cooldown_ns = b->base_cooldown_ns;
    b->opens = 0;
    b->refused = 0;
    pthread_mutex_unlock(&b->mu);
}

const char *breaker_state_name(breaker_state s)
{
    return s == BREAKER_OPEN ? "open" : s == BREAKER_HALF_OPEN ? "half_open" : "closed";
}

static void open_for(breaker *b, uint64_t cooldown_ns, uint64_t now)
{
    breaker_state from = b->state;

    b->state = BREAKER_OPEN;
    b->cooldown_ns = cooldown_ns < b->max_cooldown_ns ? cooldown_ns : b->max_cooldown_ns;
    b->open_until = now + b->cooldown_ns;
    b->opens++;
    log_warn("breaker", "%s: %s -> open after %u consecutive failures; probe in %llu ms",
             b->name, breaker_state_name(from), b->failures,
             (unsigned long long)(b->cooldown_ns / MS));
}

static uint64_t ms_until(uint64_t t, uint64_t now)
{
    uint64_t ms = t > now ? (t - now + MS - 1) / MS : 0;

    return ms ? ms : 1;
}

int breaker_allow(breaker *b, uint64_t now_ns, uint64_t *retry_ms)
{
    int allow = 1;

    if (atomic_load(&b->state) == BREAKER_CLOSED)
        return 1;
    pthread_mutex_lock(&b->mu);
    if (b->state == BREAKER_OPEN && now_ns >= b->open_until) {
        b->state = BREAKER_HALF_OPEN;
        b->probe_start = now_ns;
        log_info("breaker", "%s: open -> half_open, probing", b->name);
    } else if (b->state == BREAKER_OPEN) {
        allow = 0;
        *retry_ms = ms_until(b->open_until, now_ns);
    } else if (b->state == BREAKER_HALF_OPEN) {
        /* One probe at a time; a probe unanswered for a whole cool-down is
         * presumed lost and another may go. */
        if (now_ns - b->probe_start < b->cooldown_ns) {
            allow = 0;
            *retry_ms = ms_until(b->probe_start + b->cooldown_ns, now_ns);
        } else {
            b->probe_start = now_ns;
        }
    }
    if (!allow)
        b->refused++;
    pthread_mutex_unlock(&b->mu);
    return allow;
}

void breaker_report(breaker *b, int ok, uint64_t now_ns)
{
    if (ok && atomic_load(&b->state) == BREAKER_CLOSED && atomic_load(&b->failures) == 0)
        return;
    pthread_mutex_lock(&b->mu);
    if (b->threshold == 0 || b->state == BREAKER_OPEN) {
        /* off, or a call from before the opening */
    } else if (ok) {
        if (b->state == BREAKER_HALF_OPEN) {
            b->state = BREAKER_CLOSED;
            b->cooldown_ns = b->base_cooldown_ns;
            log_info("breaker", "%s: half_open -> closed, probe succeeded", b->name);
        }
        b->failures = 0;
    } else {
        b->failures++;
        if (b->state == BREAKER_HALF_OPEN)
            open_for(b, b->cooldown_ns * 2, now_ns);
        else if (b->failures >= b->threshold)
            open_for(b, b->base_cooldown_ns, now_ns);
    }
    pthread_mutex_unlock(&b->mu);
}

void breaker_abstain(breaker *b, uint64_t now_ns)
{
    if (atomic_load(&b->state) != BREAKER_HALF_OPEN)
        return;
    pthread_mutex_lock(&b->mu);
    if (b->state == BREAKER_HALF_OPEN)  /* the probe slot is free again */
        b->probe_start = now_ns > b->cooldown_ns ? now_ns - b->cooldown_ns : 0;
    pthread_mutex_unlock(&b->mu);
}

void breaker_snapshot_get(breaker *b, uint64_t now_ns, breaker_snapshot *out)
{
    pthread_mutex_lock(&b->mu);
    out->state = b->state;
    out->consecutive_failures = b->failures;
    out->opens = b->opens;
    out->refused = b->refused;
    out->retry_in_ms = b->state == BREAKER_OPEN ? ms_until(b->open_until, now_ns) : 0;
    pthread_mutex_unlock(&b->mu);
}
