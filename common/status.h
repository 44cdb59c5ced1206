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

/* Writes the response body for 'path' into 'out' and returns the HTTP
 * status (404 for unknown paths). '*type' is set to the Content-Type. */
typedef int (*status_render_fn)(const char *path, lj_buf *out, const char **type, void *arg);

typedef struct status_server status_server;

/* Listens on 'host':'port' and serves from a new thread. Returns NULL (and
 * logs why) when the port cannot be bound. */
status_server *status_start(const char *host, int port, status_render_fn render, void *arg);

/* Stops the thread, closes the socket and frees 's' (NULL: no-op). */
void status_stop(status_server *s);

#endif
