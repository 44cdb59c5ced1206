/* ratelimit.h -- per-key token buckets in bounded memory (issue 11).
 *
 * Each key (a device serial, a client address) has a bucket of 'burst'
 * tokens refilled at 'rate' per second; a call takes one token or is
 * refused. A bucket is one 64-bit "theoretical arrival time" (GCRA), so
 * the table is a fixed array of 16-byte slots allocated once: memory does
 * not grow with the number of distinct keys.
 *
 * Keys are held as 64-bit hashes. A new key takes a free slot near its
 * home, else the slot of an idle key (a full bucket: evicting it changes
 * nothing), else the slot whose bucket is fullest -- only then does a
 * limited key get a fresh bucket, which happens only with more busy keys
 * than slots. Thread-safe: the table is split into shards, each under its
 * own mutex.
 */
#ifndef LJ_PRODUCER_RATELIMIT_H
#define LJ_PRODUCER_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

typedef struct ratelimit ratelimit;

typedef struct ratelimit_usage {
    size_t slots;           /* capacity, fixed at creation */
    size_t tracked;         /* slots holding a key */
    uint64_t evicted_busy;  /* keys evicted before their bucket was full */
} ratelimit_usage;

/* 'rate' tokens per second (>= 1), 'burst' at most (>= 1), about 'slots'
 * keys (rounded up to a power of two, at least 64). NULL when out of
 * memory. */
ratelimit *ratelimit_new(unsigned rate, unsigned burst, size_t slots);
void ratelimit_free(ratelimit *rl);

/* Takes one token from 'key' at monotonic time 'now_ns'. Returns 1 when
 * taken; 0 when the bucket is empty, with '*retry_ns' set to the wait
 * before a token is available. */
int ratelimit_take(ratelimit *rl, const char *key, size_t len, uint64_t now_ns,
                   uint64_t *retry_ns);

void ratelimit_usage_get(ratelimit *rl, ratelimit_usage *out);

#endif
