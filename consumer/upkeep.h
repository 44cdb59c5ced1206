/* upkeep.h -- what a worker does between batches, every upkeep_interval_ms.
 *
 *  - claims entries idle on other consumers and takes over dead local ones
 *    (claim.c);
 *  - trims its stream below the oldest entry any group still needs:
 *
 *        XTRIM <stream> MINID <m>,  m = min over groups of
 *            (oldest pending ID if the group has pending entries,
 *             else its last-delivered ID)
 *
 *    so no un-acknowledged entry and no undelivered one is ever removed
 *    (SPEC §3: MAXLEN would drop them);
 *  - reads its group's lag, pending count and the stream length for
 *    /metrics;
 *  - health workers, hourly: with --retention-months, drop the months older
 *    than that (retention.h; ljwx_consumer_partitions_dropped_total,
 *    ljwx_consumer_retention_failures_total); then create the coming months'
 *    partitions (one process at a time: a transaction-level PostgreSQL advisory lock) and
 *    count the months ahead that have one (ljwx_consumer_partitions_ahead;
 *    -1 on failure).
 * Failures are logged and retried at the next upkeep. Worker thread only.
 */
#ifndef LJ_CONSUMER_UPKEEP_H
#define LJ_CONSUMER_UPKEEP_H

#include "session.h"

void upkeep_run(session *s);

#endif
