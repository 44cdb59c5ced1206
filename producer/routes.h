/* routes.h -- maps each request to its endpoint (SPEC §2, §4, §7).
 *
 * One routes value per loop thread, holding that loop's services. Unknown
 * paths answer 404, a known path with the wrong method 405 with Allow.
 */
#ifndef LJ_PRODUCER_ROUTES_H
#define LJ_PRODUCER_ROUTES_H

#include <uv.h>

#include "config.h"
#include "gray.h"
#include "http_server.h"
#include "ingest.h"
#include "ledger.h"
#include "rcluster.h"

typedef struct routes {
    uv_loop_t *loop;
    const lj_config *cfg;
    ingest *ingest;
    rcluster *link;
    gray *gray;
    ledger *ledger;
} routes;

/* The http_handler_fn of the server; 'arg' is a routes. */
void route_request(http_request *req, void *arg);

#endif
