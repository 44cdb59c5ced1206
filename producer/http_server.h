/* http_server.h -- HTTP/1.1 server on a libuv loop (SPEC §2.3).
 *
 * Accepts connections, frames requests strictly (RFC 9112, stricter than
 * http-parser: see SECURITY.md), enforces the size limits, and hands each
 * complete request to one handler. Requests on a connection are handled one
 * at a time, so pipelined requests are answered in order. A client that
 * sends requests but does not read the answers is not read either while its
 * unsent output is above lim->max_unsent (its buffered pipelined requests
 * wait unparsed), and is closed when that lasts lim->send_timeout_ms.
 *
 * Runs on one loop thread. The handler may answer at once with
 * http_respond(), or later (after a Redis reply): it calls http_defer()
 * before returning and http_respond() exactly once afterwards. A deferred
 * request keeps its connection's memory alive; if the client went away
 * meanwhile the response is dropped.
 */
#ifndef LJ_PRODUCER_HTTP_SERVER_H
#define LJ_PRODUCER_HTTP_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include <http_parser.h>
#include <uv.h>

#include "buf.h"
#include "http_frame.h"

typedef struct http_server http_server;
typedef struct http_conn http_conn;

#define HTTP_AUTH_MAX 512

/* One request, valid until http_respond(). The strings are NUL-terminated
 * and owned by the connection. */
typedef struct http_request {
    http_conn *conn;
    enum http_method method;
    const char *path;           /* without the query string */
    const char *query;          /* "" when none */
    const char *body;
    size_t body_len;
    const char *authorization;  /* "" when absent */
    const char *remote_addr;    /* "127.0.0.1" */
    int remote_is_loopback;
    int forwarded;              /* carried a proxy's header (http_frame_is_forwarding) */
    uint64_t start_ns;          /* when the request was complete (uv_hrtime) */
    int route;                  /* set by the handler, reported to the observer */
} http_request;

typedef void (*http_handler_fn)(http_request *req, void *arg);

/* Told about every response, every connection opened (+1) or closed (-1),
 * and every connection closed because its client did not read its answers
 * (unsent output above max_unsent for send_timeout_ms). Any may be NULL. */
typedef struct http_observer {
    void (*on_response)(const http_request *req, int status, void *arg);
    void (*on_connections)(int delta, void *arg);
    void (*on_send_timeout)(void *arg);
    void *arg;
} http_observer;

/* Returns a server that will call 'fn' with 'arg' for each request, or NULL. */
http_server *http_server_new(uv_loop_t *loop, const http_limits *lim, http_handler_fn fn,
                             void *arg);
/* Reports responses and connections to 'obs' (copied). */
void http_server_observe(http_server *s, const http_observer *obs);

/* Listens on 'host':'port' (0: any free port). 0 or a negative UV_E* code. */
int http_server_listen(http_server *s, const char *host, int port);
/* The port actually bound. */
int http_server_port(const http_server *s);
/* Shutdown, step one: stops accepting and closes idle connections (keep-alive
 * ones waiting for a next request, lingering ones); requests being received
 * or handled go on, and each answer from now on closes its connection. */
void http_server_drain(http_server *s);
/* Connections still receiving, handling or sending a request: 0 when the
 * drain is complete. */
int http_server_busy(const http_server *s);
/* Shutdown at the drain deadline: every request still handled is answered
 * 503 with Retry-After now (its owner's later answer is dropped, as for a
 * client that went away), and connections still receiving one are closed. */
void http_server_expire(http_server *s);

/* Stops accepting and closes every connection. Call once, then run the loop
 * until it has no more handles and call http_server_free(). */
void http_server_close(http_server *s);
void http_server_free(http_server *s);

/* Keeps 'req' valid after the handler returns; answer with http_respond(). */
void http_defer(http_request *req);

/* Sends the response to 'req': status line, Content-Type application/json,
 * Content-Length, 'extra_headers' (each line ending in CRLF, or NULL) and
 * 'body'. A 4xx/5xx status closes the connection after the write. */
void http_respond(http_request *req, int status, const char *extra_headers, const char *body,
                  size_t body_len);

/* As http_respond() with another Content-Type. */
void http_respond_typed(http_request *req, int status, const char *content_type,
                        const char *extra_headers, const char *body, size_t body_len);

/* Convenience: {"status":"error","message":<msg>} with 'status'. */
void http_respond_error(http_request *req, int status, const char *msg);

#endif
