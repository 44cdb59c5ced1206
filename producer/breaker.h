/* breaker.h -- a circuit breaker in front of one dependency (issue 11).
 *
 *   closed     calls go through; 'failures' consecutive failures open it
 *   open       calls are refused at once for the cool-down
 *   half_open  the cool-down is over: one call (the probe) goes through;
 *              its success closes the breaker, its failure opens it again
 *              with twice the cool-down (up to the maximum)
 *
 * Every call that was let through reports its outcome once. Outcomes of
 * calls let through before the breaker opened do not move an open breaker.
 * Transitions are logged. Thread-safe; time is passed in (monotonic ns), so
 * the logic is testable without a clock.
 */
#ifndef LJ_PRODUCER_BREAKER_H
#define LJ_PRODUCER_BREAKER_H

#include <stdint.h>

typedef struct breaker breaker;

typedef enum breaker_state { BREAKER_CLOSED, BREAKER_OPEN, BREAKER_HALF_OPEN } breaker_state;

typedef struct breaker_snapshot {
    breaker_state state;
    unsigned consecutive_failures;
    uint64_t opens;             /* times it opened since start */
    uint64_t refused;           /* calls refused while open */
    uint64_t retry_in_ms;       /* open: until the next probe; else 0 */
} breaker_snapshot;

#define BREAKER_NAME_MAX 80

/* 'name' (copied, cut to BREAKER_NAME_MAX - 1 bytes) appears in the log.
 * 'failures' 0: never opens. NULL when out of memory. */
breaker *breaker_new(const char *name, unsigned failures, unsigned cooldown_ms,
                     unsigned max_cooldown_ms);
void breaker_free(breaker *b);

/* As new (closed, counters at zero), named 'name' now: a breaker reused
 * for another dependency. */
void breaker_reset(breaker *b, const char *name);

/* 1: make the call, then report it; 0: refused, with '*retry_ms' set to the
 * time until the next probe (at least 1). */
int breaker_allow(breaker *b, uint64_t now_ns, uint64_t *retry_ms);

/* Reports a call that breaker_allow() let through. */
void breaker_report(breaker *b, int ok, uint64_t now_ns);

/* Instead of breaker_report(), for a call let through that ended without
 * telling anything of the dependency (refused on our side before reaching
 * it: on a Redis Cluster, its shard's master is down). Counts as neither
 * outcome; when it was the probe, another call may probe at once. */
void breaker_abstain(breaker *b, uint64_t now_ns);

void breaker_snapshot_get(breaker *b, uint64_t now_ns, breaker_snapshot *out);

/* "closed", "open" or "half_open". */
const char *breaker_state_name(breaker_state s);

#endif
