/* ledger.h -- the conservation identity of each stream, for operators.
 *
 * Every --ratio-refresh-ms each loop reads, per stream shard and in one
 * script (a snapshot, sent to the shard's master), its consumer group's
 * XINFO GROUPS (entries read, lag, pending) and the consumers' counts
 * (HGETALL <stream>:counts, kept by consumer/settle.c in the same script as
 * each XACK). From them:
 *
 *   accepted      entries ever added to the stream (entries-read + lag)
 *   stored        settled after a commit that stored a new row
 *   duplicates    settled, every row already stored
 *   dead_lettered settled into the dead letters
 *   gone          trimmed while pending (settled, never stored: must stay 0)
 *   pending       delivered to a consumer, not yet settled
 *   undelivered   not yet delivered (the group's lag)
 *
 * summed over the shards of the stream (shown under its plain name once
 * every shard has been read whole), and 'balanced' when accepted = stored +
 * duplicates + dead_lettered + gone + pending + undelivered. At any quiet
 * moment it must hold: an entry that left the stream any other way was
 * lost. Shown in /api/stream_metrics ("conservation") and /metrics
 * (ljwx_stream_entries).
 *
 * Each round also reads INFO persistence (on a cluster, of every master
 * holding a health shard, labelled master="host:port"): /metrics shows
 * Redis's AOF size now and after its last rewrite
 * (ljwx_redis_aof_current_bytes, _base_bytes; neither while AOF is off or
 * Redis has not answered yet; a failed read keeps the last figures). Loop
 * thread only.
 */
#ifndef LJ_PRODUCER_LEDGER_H
#define LJ_PRODUCER_LEDGER_H

#include <uv.h>

#include "buf.h"
#include "config.h"
#include "rcluster.h"

typedef struct ledger ledger;

ledger *ledger_new(uv_loop_t *loop, rcluster *link, const lj_config *cfg);
/* Stops polling; freed once no reply is outstanding and the timer closed. */
void ledger_close(ledger *l);

/* Appends ,"conservation":{"<stream>":{...},...} (streams not yet read are
 * null). 0 or LJ_ENOMEM. */
int ledger_render_json(const ledger *l, lj_buf *out);
/* Appends the ljwx_stream_entries gauges (the sums, by plain name), with
 * shards ljwx_stream_shard_entries (each shard, label shard="k"), and the
 * ljwx_redis_aof_* gauges. 0 or LJ_ENOMEM. */
int ledger_render_prometheus(const ledger *l, lj_buf *out);

#endif
