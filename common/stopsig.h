/* stopsig.h -- how a multi-threaded program (consumer, notifier) waits
 * for SIGINT/SIGTERM.
 *
 * The main thread blocks the two signals before it starts any thread (so
 * every thread inherits the mask and none is interrupted), then takes them
 * with sigwait() and sets the shared stop flag the workers poll.
 */
#ifndef LJ_COMMON_STOPSIG_H
#define LJ_COMMON_STOPSIG_H

#include <signal.h>
#include <stdatomic.h>

/* Blocks SIGINT and SIGTERM in the calling thread, ignores SIGPIPE, and
 * fills 'set' for stopsig_wait(). Call before creating threads. */
void stopsig_block(sigset_t *set);

/* Unless '*stop' is already set (a worker failed to start), waits for one
 * of the signals of 'set', logs "signal N: stopping 'what'" and sets
 * '*stop'. */
void stopsig_wait(const sigset_t *set, atomic_int *stop, const char *what);

#endif
