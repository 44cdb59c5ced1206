/* ingest.h -- upload endpoints of the stream path (SPEC §2.1, §3).
 *
 * Validates an upload, appends it to its stream with one XADD carrying the
 * normalised records, and answers 200 "accepted" only once Redis has
 * replied with the entry ID. Redis down or refusing: 503 + Retry-After,
 * never a 2xx.
 *
 * One ingest per loop thread; it borrows the loop's rlink and the config.
 */
#ifndef LJ_PRODUCER_INGEST_H
#define LJ_PRODUCER_INGEST_H

#include "config.h"
#include "http_server.h"
#include "rlink.h"

typedef struct ingest ingest;

/* Returns the ingest state for one loop, or NULL when out of memory.
 * 'cfg' and 'link' must outlive it. */
ingest *ingest_new(const lj_config *cfg, rlink *link);
void ingest_free(ingest *in);

/* POST /upload_health_data_v2 */
void ingest_health_v2(ingest *in, http_request *req);

#endif
