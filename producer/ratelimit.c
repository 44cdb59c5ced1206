#include "ratelimit.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#define NSHARDS 64          /* power of two */
#define PROBE 8             /* slots a key may sit in, from its home slot on */

typedef struct slot {
    uint64_t key;           /* 0: free */
    uint64_t tat;           /* when the bucket is full again (ns) */
} slot;

typedef struct shard {
    pthread_mutex_t mu;
    slot *slots;
    size_t tracked;
} shard;

struct ratelimit {
    uint64_t interval_ns;   /* one token's worth of time */
    uint64_t tolerance_ns;  /* (burst - 1) tokens' worth */
    size_t mask;            /* slots per shard - 1 */
    atomic_uint_fast64_t evicted_busy;
    shard shards[NSHARDS];
};

/* 64-bit FNV-1a, then a finaliser so that shard and slot bits both mix. */
static uint64_t key_hash(const char *key, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull;
    size_t i;

    for (i = 0; i < len; i++)
        h = (h ^ (unsigned char)key[i]) * 0x100000001b3ull;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h ? h : 1;
}

ratelimit *ratelimit_new(unsigned rate, unsigned burst, size_t slots)
{
    ratelimit *rl = calloc(1, sizeof(*rl));
    size_t per_shard = 1;
    size_t i;

    if (rl == NULL)
        return NULL;
    while (per_shard * NSHARDS < slots)
        per_shard <<= 1;
    rl->interval_ns = 1000000000ull / (rate ? rate : 1);
    rl->tolerance_ns = rl->interval_ns * (burst ? burst - 1 : 0);
    rl->mask = per_shard - 1;
    for (i = 0; i < NSHARDS; i++) {
        rl->shards[i].slots = calloc(per_shard, sizeof(slot));
        if (rl->shards[i].slots == NULL) {
            ratelimit_free(rl);
            return NULL;
        }
        pthread_mutex_init(&rl->shards[i].mu, NULL);
    }
    return rl;
}

void ratelimit_free(ratelimit *rl)
{
    size_t i;

    if (rl == NULL)
        return;
    for (i = 0; i < NSHARDS && rl->shards[i].slots; i++) {
        pthread_mutex_destroy(&rl->shards[i].mu);
        free(rl->shards[i].slots);
    }
    free(rl);
}

/* The slot holding 'key', or the one to give it: free first, then idle
 * (bucket full at 'now'), then the fullest bucket. */
static slot *find_slot(ratelimit *rl, shard *sh, uint64_t key, uint64_t now)
{
    slot *victim = NULL;
    size_t home = (size_t)(key >> 8);
    size_t i;

    for (i = 0; i < PROBE; i++) {
        slot *s = &sh->slots[(home + i) & rl->mask];

        if (s->key == key)
            return s;
        if (s->key == 0) {
            if (victim == NULL || victim->key != 0)
                victim = s;
        } else if (victim == NULL || (victim->key != 0 && s->tat < victim->tat)) {
            victim = s;
        }
    }
    if (victim->key == 0)
        sh->tracked++;
    else if (victim->tat > now)
        atomic_fetch_add(&rl->evicted_busy, 1);
    victim->key = key;
    victim->tat = now;
    return victim;
}

int ratelimit_take(ratelimit *rl, const char *key, size_t len, uint64_t now_ns,
                   uint64_t *retry_ns)
{
    uint64_t h = key_hash(key, len);
    shard *sh = &rl->shards[h & (NSHARDS - 1)];
    int taken = 1;
    uint64_t tat;
    slot *s;

    pthread_mutex_lock(&sh->mu);
    s = find_slot(rl, sh, h, now_ns);
    tat = s->tat > now_ns ? s->tat : now_ns;
    if (tat - now_ns > rl->tolerance_ns) {
        *retry_ns = tat - now_ns - rl->tolerance_ns;
        taken = 0;
    } else {
        s->tat = tat + rl->interval_ns;
    }
    pthread_mutex_unlock(&sh->mu);
    return taken;
}

void ratelimit_usage_get(ratelimit *rl, ratelimit_usage *out)
{
    size_t i;

    out->slots = (rl->mask + 1) * NSHARDS;
    out->tracked = 0;
    for (i = 0; i < NSHARDS; i++) {
        pthread_mutex_lock(&rl->shards[i].mu);
        out->tracked += rl->shards[i].tracked;
        pthread_mutex_unlock(&rl->shards[i].mu);
    }
    out->evicted_busy = atomic_load(&rl->evicted_busy);
}
