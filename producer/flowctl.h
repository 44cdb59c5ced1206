/* flowctl.h -- the producer's flow control, one per process (issue 11).
 *
 *   device limit    token bucket per device_sn (--device-rate/--device-burst):
 *                   an upload takes one token from each distinct serial in
 *                   it; records of limited devices are rejected
 *   address limit   token bucket per client address (--addr-rate), off by
 *                   default: watches often share a carrier NAT address
 *   in-flight cap   uploads waiting on Redis or PostgreSQL (--max-inflight);
 *                   beyond it 503 at once instead of a growing queue
 *   breakers        one for Redis (stream path), one for the legacy path's
 *                   PostgreSQL (breaker.h); on a Redis Cluster one per
 *                   master in front of the XADDs routed to it, so a dead
 *                   master refuses only the devices of its shards
 *
 * Limits hold per producer process: with several instances a device may
 * send up to the limit to each. Set up before the loops start; every loop
 * thread shares it.
 */
#ifndef LJ_PRODUCER_FLOWCTL_H
#define LJ_PRODUCER_FLOWCTL_H

#include <stdint.h>

#include "breaker.h"
#include "buf.h"
#include "config.h"

enum flowctl_dep { FLOWCTL_REDIS, FLOWCTL_PG, FLOWCTL_DEPS };

/* 0, or LJ_ENOMEM. */
int flowctl_init(const lj_config *cfg);
void flowctl_cleanup(void);

/* 1 when 'addr' may upload now; else 0 with '*retry_ms' set (counted). */
int flowctl_addr_allow(const char *addr, uint64_t *retry_ms);

/* 1 when device 'sn' may upload now; else 0 with '*retry_ms' set. */
int flowctl_device_allow(const char *sn, uint64_t *retry_ms);

/* Counts 'records' rejected as rate_limited and whether the whole upload
 * was answered 429. */
void flowctl_count_limited(uint64_t records, int whole_upload);

/* 1 when one more upload may wait on storage (call flowctl_leave() once
 * it is answered); 0 when the cap is reached (counted). */
int flowctl_enter(void);
void flowctl_leave(void);

/* The breaker in front of 'dep'. */
breaker *flowctl_breaker(enum flowctl_dep dep);

/* The breaker in front of the cluster master 'name' ("host:port"), made on
 * first use; the FLOWCTL_REDIS one when the table of masters is full. A
 * master not asked for in a minute is no longer shown, and after ten its
 * entry may go to another master (an outcome is reported within seven
 * --redis-timeout-ms of asking, at most seven minutes: the pointer stays
 * good till then). */
breaker *flowctl_master_breaker(const char *name);

/* "Retry-After: <s>\r\n" for a wait of 'ms' (at least one second). */
void flowctl_retry_after(uint64_t ms, char *out, size_t len);

/* Appends ,"flow_control":{...} (limits, counters, breakers; on a cluster
 * "redis" sums its masters' breakers, each under "masters"). */
int flowctl_render_json(lj_buf *out);
/* Appends the Prometheus lines. */
int flowctl_render_prometheus(lj_buf *out);

#endif
