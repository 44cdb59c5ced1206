/* batchsize.h -- the XREADGROUP COUNT a worker asks for (docs/consumer.md).
 *
 * Adaptive (the default), the COUNT follows the worker's recent lag and
 * commit time, within [min, max]:
 *
 *   read came back empty               -> min
 *   read came back short (got < COUNT) -> max(min, 2 * got): the stream is
 *                                         drained, keep the next batches small
 *   read came back full (got = COUNT)  -> a backlog: 2 * COUNT, or the
 *                                         group's lag when that is larger
 *   then, whenever the batch took longer than 'target_ms' to store and
 *   acknowledge, COUNT is cut to got * target_ms / took, so a slow
 *   PostgreSQL is not handed ever bigger transactions.
 *
 * So a quiet stream is read in small batches that commit fast, a backlog in
 * batches that double each read up to max, and COUNT never leaves [min,
 * max]. Fixed ('adaptive' 0), COUNT is always max.
 *
 * Pure logic, no I/O and no clock: one per worker, on the worker's thread.
 */
#ifndef LJ_CONSUMER_BATCHSIZE_H
#define LJ_CONSUMER_BATCHSIZE_H

#include <stddef.h>

typedef struct batchsize {
    int min;
    int max;
    int target_ms;
    int adaptive;
    int count;          /* COUNT of the next read */
} batchsize;

/* Starts at 'min' when adaptive, else at 'max'. 'min' above 'max' is taken
 * as 'max'; 'target_ms' <= 0 turns the commit-time cut off. */
void batchsize_init(batchsize *z, int min, int max, int target_ms, int adaptive);

/* Sets the next COUNT after a read of 'got' entries that was asked for
 * z->count. 'lag' is the group's last known lag (-1: unknown), 'took_ms'
 * how long storing and acknowledging the batch took (0 for an empty read).
 * Returns the new COUNT. */
int batchsize_update(batchsize *z, size_t got, long long lag, double took_ms);

#endif
