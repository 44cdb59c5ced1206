/* deadletter.h -- move entries that cannot be stored to the dead letters.
 *
 * A dead letter is kept twice: in PostgreSQL (t_dead_letter, the record an
 * operator can always list and replay: one row per stream and entry ID) and
 * in Redis (<stream>:dead, trimmed to about --dead-stream-maxlen entries, for
 * the tools that watch the stream). The Redis entry carries why, the
 * original ID, the attempts counted against it and the consumer
 * (STREAM_DEAD_* fields), followed by every original field, so it can be
 * inspected and replayed (XADD back to the stream).
 *
 * Order: the row is committed first; then the Redis XADD, the XACK of the
 * original and its count go in one transaction (settle.h). A crash between
 * the two leaves the entry pending, to be dead-lettered again: the row is
 * not written twice, and the Redis copy only once the original is settled.
 */
#ifndef LJ_CONSUMER_DEADLETTER_H
#define LJ_CONSUMER_DEADLETTER_H

#include "session.h"

/* Moves 'e' to the dead letters with 'reason'. 0, LJ_EREDIS, LJ_EUNAVAIL,
 * LJ_EPG or LJ_ENOMEM (the entry then stays pending). */
int dlq_move(session *s, const batch_entry *e, const char *reason);

#endif
