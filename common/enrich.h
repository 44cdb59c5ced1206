/* enrich.h -- device -> user, customer, org (SPEC §5.2).
 *
 * Looks up the owners of a batch's devices with one query
 * (device_sn = ANY($1)) for the devices not in the cache, and caches every
 * answer, "bound to nobody" included, for 'ttl_ms'. Soft-deleted users and
 * memberships are ignored. A device with several organisations gets the
 * lowest org id.
 *
 * One cache per thread (no locking); it holds no PostgreSQL state, so the
 * connection may change between calls.
 */
#ifndef LJ_COMMON_ENRICH_H
#define LJ_COMMON_ENRICH_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "copyenc.h"

typedef struct enrich_cache enrich_cache;

/* A cache of at most 'max_entries' devices (it is emptied when full). */
enrich_cache *enrich_new(size_t max_entries, int64_t ttl_ms);
void enrich_free(enrich_cache *c);

/* Fills owners[i] for sns[i], i < n (ids 0 when unbound). 'now_ms' is the
 * clock for the TTL. Returns 0, or an error as pg_exec() when the lookup
 * query failed (owners untouched). */
int enrich_lookup(enrich_cache *c, PGconn *pg, const char *const *sns, size_t n,
                  int64_t now_ms, copyenc_owner *owners);

/* Devices answered from the cache and from queries, since creation. */
void enrich_counts(const enrich_cache *c, uint64_t *hits, uint64_t *misses);

#endif
