/* status.h -- a small status port (consumer, notifier): GET /health, GET /metrics.
 *
 * One thread with blocking sockets: these endpoints are scraped a few times a
 * minute, so one connection at a time with a short read timeout is enough.
 * The thread calls 'render' for each request; 'render' must be thread-safe
 * (it reads atomics).
 */
#ifndef LJ_COMMON_STATUS_H
#define LJ_COMMON_STATUS_H

#include "buf.h"

/* Writes one page's body into 'out' and returns its HTTP status. Called
 * from the status thread: must be thread-safe (it reads atomics). */
typedef int (*status_page_fn)(lj_buf *out, void *arg);

typedef struct status_server status_server;

/* Listens on 'host':'port' and serves from a new thread: GET /metrics from
 * 'metrics' (Prometheus text), GET /health from 'health' (JSON), both with
 * 'arg'; other paths 404. Returns NULL (and logs why) when the port cannot
 * be bound. */
status_server *status_start(const char *host, int port, status_page_fn metrics,
                            status_page_fn health, void *arg);

/* Stops the thread, closes the socket and frees 's' (NULL: no-op). */
void status_stop(status_server *s);

#endif
