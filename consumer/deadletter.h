/* deadletter.h -- move entries that cannot be stored to <stream>:dead.
 *
 * The dead-letter entry carries why, the original ID, its delivery count and
 * the consumer, followed by every original field, so it can be inspected and
 * replayed (XADD back to the stream) later. The original is acknowledged
 * only after the dead-letter XADD succeeded: a crash in between leaves it
 * pending, to be dead-lettered again (possibly twice, never lost).
 */
#ifndef LJ_CONSUMER_DEADLETTER_H
#define LJ_CONSUMER_DEADLETTER_H

#include "session.h"

/* Moves 'e' to the dead-letter stream with 'reason'. 0, LJ_EREDIS,
 * LJ_EUNAVAIL or LJ_ENOMEM (the entry then stays pending). */
int dlq_move(session *s, const batch_entry *e, const char *reason);

#endif
