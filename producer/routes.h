/* routes.h -- maps each request to its endpoint (SPEC §2, §7).
 *
 * One routes table per loop thread. Unknown paths answer 404, a known path
 * with the wrong method 405 with an Allow header.
 */
#ifndef LJ_PRODUCER_ROUTES_H
#define LJ_PRODUCER_ROUTES_H

#include "http_server.h"
#include "ingest.h"
#include "rlink.h"

typedef struct routes {
    ingest *ingest;
    rlink *link;
} routes;

/* The http_handler_fn of the server; 'arg' is a routes. */
void route_request(http_request *req, void *arg);

#endif
