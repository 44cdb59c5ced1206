#include "http_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"

/* ------------------------------------------------------------------------
 * Types
 * ------------------------------------------------------------------------ */

enum conn_state {
    CONN_READING,   /* feeding bytes to the parser */
    CONN_HANDLING,  /* a complete request is with the handler */
    CONN_FLUSHING,  /* answered with Connection: close; closes after the write */
    CONN_LINGER,    /* written and shut down: reading and discarding before close */
    CONN_CLOSING    /* uv_close() called; freed when the last ref goes */
};

#define FIELD_MAX 32    /* header names we care about are shorter */

struct http_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;       /* the one deadline of the current state */
    uv_shutdown_t shutdown;
    http_server *srv;
    http_parser parser;
    enum conn_state state;
    int refs;               /* the two uv handles, plus one while a request is deferred */
    int deferred;
    int in_process;         /* inside process_input(): do not re-enter */
    int headers_scanned;    /* this request's header block passed scan_header_block() */
    size_t head_left;       /* bytes of that block the parser has not seen yet */
    int in_body;            /* the parser is past this request's headers */
    int chunked;            /* ... and its body is chunked: checked by 'chunk' first */
    http_chunked chunk;
    size_t checked_ahead;   /* bytes at in.data[in_off] that 'chunk' passed */
    int keep_alive;
    int read_paused;        /* too much pipelined input waiting: reads stopped */
    int out_paused;         /* unsent output above lim.max_unsent: not read, input not parsed */
    uint64_t out_paused_ms; /* loop time it went above */
    int err_status;         /* set by a parser callback that refused the request */
    const char *err_msg;
    uint64_t first_byte_ms; /* loop time of the current request's first byte, 0: idle */
    uint64_t headers_ms;    /* loop time its headers were complete, 0: not yet */
    size_t lingered;        /* bytes discarded while lingering */
    lj_buf in;              /* received bytes; in.data[in_off..] not parsed yet */
    size_t in_off;
    lj_buf url;
    lj_buf body;
    char field[FIELD_MAX + 1];
    size_t field_len;
    int in_value;           /* last callback was on_header_value */
    char auth[HTTP_AUTH_MAX + 1];
    size_t auth_len;
    char te[16];            /* Transfer-Encoding, lower case; longer: not "chunked" */
    size_t te_len;
    int expect_continue;    /* "Expect: 100-continue" */
    int forwarded;          /* a forwarding header was seen */
    char remote[INET6_ADDRSTRLEN];
    int loopback;
    http_request req;
    http_conn *prev;
    http_conn *next;
};

struct http_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    http_limits lim;
    http_handler_fn handler;
    void *handler_arg;
    http_conn *conns;       /* every open connection, for http_server_close() */
    int nconns;
    int accept_paused;      /* at max_connections: one connection waits in the listener */
    http_observer obs;
    int closing;            /* not accepting any more */
    int draining;           /* http_server_drain(): every answer closes its connection */
    int listener_closed;
    char readbuf[65536];    /* one loop thread: reads are copied out at once */
};

typedef struct write_req {
    uv_write_t w;
    char *data;
} write_req;

static http_parser_settings parser_settings;

static void process_input(http_conn *c);
static void conn_close(http_conn *c);
static void arm_timer(http_conn *c);
static void accept_one(http_server *s);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

/* ------------------------------------------------------------------------
 * Connection lifetime
 * ------------------------------------------------------------------------ */

static void conn_unref(http_conn *c)
{
    if (--c->refs > 0)
        return;
    lj_buf_cleanup(&c->in);
    lj_buf_cleanup(&c->url);
    lj_buf_cleanup(&c->body);
    free(c);
}

static void on_conn_closed(uv_handle_t *h)
{
    conn_unref(h->data);
}

static void conn_close(http_conn *c)
{
    http_server *s = c->srv;

    if (c->state == CONN_CLOSING)
        return;
    c->state = CONN_CLOSING;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    uv_close((uv_handle_t *)&c->timer, on_conn_closed);
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
    s->nconns--;
    if (s->obs.on_connections)
        s->obs.on_connections(-1, s->obs.arg);
    if (s->accept_paused && !s->closing) {
        s->accept_paused = 0;
        accept_one(s);      /* the connection waiting in the listener */
    }
}

static void reset_request(http_conn *c)
{
    lj_buf_reset(&c->url);
    lj_buf_reset(&c->body);
    c->field_len = 0;
    c->in_value = 0;
    c->auth_len = 0;
    c->auth[0] = '\0';
    c->te_len = 0;
    c->te[0] = '\0';
    c->expect_continue = 0;
    c->forwarded = 0;
    c->err_status = 0;
    c->err_msg = NULL;
}

/* ------------------------------------------------------------------------
 * Strict framing: the header block is checked before the parser sees it
 * ------------------------------------------------------------------------ */

static int refuse(http_conn *c, int status, const char *msg)
{
    c->err_status = status;
    c->err_msg = msg;
    return -1;
}

/* Checks the header block at the unparsed input (http_frame_scan); the
 * parser is then given that block alone (c->head_left), so that a chunked
 * body is checked before the parser sees any of it. */
static int scan_header_block(http_conn *c)
{
    int status = 0;
    const char *msg = NULL;
    int rc = http_frame_scan(c->in.data + c->in_off, c->in.len - c->in_off, &c->srv->lim,
                             &c->head_left, &status, &msg);

    return rc < 0 ? refuse(c, status, msg) : rc;
}

/* Checks the chunked body bytes not checked yet (http_chunked_scan): those
 * that pass, up to the body's end, are handed to the parser. 0, or -1 with
 * the 400 set on 'c'. */
static int check_chunked(http_conn *c)
{
    size_t from = c->in_off + c->checked_ahead;
    size_t used = 0;
    int status = 0;
    const char *msg = NULL;

    if (http_chunked_scan(&c->chunk, c->in.data + from, c->in.len - from, &c->srv->lim, &used,
                          &status, &msg) < 0)
        return refuse(c, status, msg);
    c->checked_ahead += used;
    return 0;
}

/* How many bytes at in.data[in_off] the parser may see now, in 'len' (0:
 * none until more arrive): the rest of the header block, then a
 * Content-Length body as it comes (the parser stops at its end) or the
 * checked part of a chunked one. 0, or -1 when the chunked check refused. */
static int parser_window(http_conn *c, size_t *len)
{
    size_t avail = c->in.len - c->in_off;

    if (!c->in_body) {
        *len = c->head_left < avail ? c->head_left : avail;
        return 0;
    }
    if (!c->chunked) {
        *len = avail;
        return 0;
    }
    if (check_chunked(c) != 0)
        return -1;
    *len = c->checked_ahead;
    return 0;
}

/* The parser finished a request: the next bytes start a new one. */
static void next_request(http_conn *c)
{
    c->headers_scanned = 0;
    c->head_left = 0;
    c->in_body = 0;
    c->chunked = 0;
    c->checked_ahead = 0;
}

/* ------------------------------------------------------------------------
 * Parser callbacks
 * ------------------------------------------------------------------------ */

static int on_message_begin(http_parser *p)
{
    reset_request(p->data);
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    http_conn *c = p->data;

    return lj_buf_append(&c->url, at, len) == 0 ? 0 : refuse(c, 500, "out of memory");
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    http_conn *c = p->data;
    size_t i;

    if (c->in_body)
        return 0;   /* a trailer field: checked by http_chunked_scan, never used */
    for (i = 0; i < len; i++)
        if (!http_frame_is_tchar((unsigned char)at[i]))
            return refuse(c, 400, "invalid header name");
    if (c->in_value) {
        c->in_value = 0;
        c->field_len = 0;
    }
    for (i = 0; i < len && c->field_len < FIELD_MAX; i++)
        c->field[c->field_len++] = (char)(at[i] | 0x20);     /* lower case */
    if (i < len)
        c->field_len = FIELD_MAX;   /* too long to be a name we read */
    c->field[c->field_len] = '\0';
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    http_conn *c = p->data;

    if (c->in_body)
        return 0;   /* trailers are not headers (RFC 9110 §6.5.1): no Authorization */
    c->in_value = 1;
    if (c->field_len == 13 && memcmp(c->field, "authorization", 13) == 0) {
        if (c->auth_len + len > HTTP_AUTH_MAX)
            return refuse(c, 431, "authorization header too long");
        memcpy(c->auth + c->auth_len, at, len);
        c->auth_len += len;
        c->auth[c->auth_len] = '\0';
    } else if (c->field_len == 6 && memcmp(c->field, "expect", 6) == 0) {
        c->expect_continue = len == 12 && strncasecmp(at, "100-continue", 12) == 0;
    } else if (c->field_len == 17 && memcmp(c->field, "transfer-encoding", 17) == 0) {
        size_t i;

        for (i = 0; i < len && c->te_len < sizeof(c->te) - 1; i++)
            c->te[c->te_len++] = (char)(at[i] | 0x20);
        if (i < len)
            c->te_len = sizeof(c->te) - 1;  /* too long to be just "chunked" */
        c->te[c->te_len] = '\0';
    } else if (!c->forwarded) {
        c->forwarded = http_frame_is_forwarding(c->field, c->field_len);
    }
    return 0;
}

static void on_write(uv_write_t *w, int status);

/* The interim "100 Continue", after the checks that could refuse the body. */
static void send_continue(http_conn *c)
{
    static char line[] = "HTTP/1.1 100 Continue\r\n\r\n";
    write_req *wr = malloc(sizeof(*wr));
    uv_buf_t b = uv_buf_init(line, sizeof(line) - 1);

    if (wr == NULL)
        return;     /* the client sends the body after its own timeout */
    wr->data = NULL;
    if (uv_write(&wr->w, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0)
        free(wr);
}

static int on_headers_complete(http_parser *p)
{
    http_conn *c = p->data;

    c->in_body = 1;
    if (p->flags & F_CHUNKED) {
        c->chunked = 1;
        http_chunked_init(&c->chunk);
    }
    /* Exactly "chunked": the parser would also take "gzip, chunked". */
    if (p->uses_transfer_encoding && strcmp(c->te, "chunked") != 0)
        return refuse(c, 501, "only the chunked transfer coding is supported");
    /* A POST without a length is refused where a body is the point (uploads);
     * admin calls such as `curl -X POST .../api/emergency_rollback` send none,
     * and RFC 9112 §6.3 reads that as an empty body. */
    if (p->method == HTTP_POST && !(p->flags & (F_CHUNKED | F_CONTENTLENGTH)) &&
        (c->url.len < 5 || strncmp(c->url.data, "/api/", 5) != 0))
        return refuse(c, 411, "Content-Length required");
    if ((p->flags & F_CONTENTLENGTH) && p->content_length > c->srv->lim.max_body)
        return refuse(c, 413, "body too large");
    c->headers_ms = uv_now(c->srv->loop);
    if (c->expect_continue && p->http_minor >= 1)
        send_continue(c);   /* clients such as curl wait for it before the body */
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    http_conn *c = p->data;

    if (c->body.len + len > c->srv->lim.max_body)
        return refuse(c, 413, "body too large");
    return lj_buf_append(&c->body, at, len) == 0 ? 0 : refuse(c, 500, "out of memory");
}

/* A chunk announcing more than the body may still hold is refused at its
 * size line, before any of its bytes are read. */
static int on_chunk_header(http_parser *p)
{
    http_conn *c = p->data;

    if (p->content_length > c->srv->lim.max_body - c->body.len)
        return refuse(c, 413, "body too large");
    return 0;
}

static int on_message_complete(http_parser *p)
{
    http_conn *c = p->data;

    c->keep_alive = http_should_keep_alive(p);
    http_parser_pause(p, 1);    /* one request at a time: answers stay in order */
    return 0;
}

/* ------------------------------------------------------------------------
 * Request dispatch and input processing
 * ------------------------------------------------------------------------ */

static void dispatch(http_conn *c)
{
    http_request *r = &c->req;
    char *q;

    if (lj_buf_append(&c->body, "", 0) != 0 || lj_buf_append(&c->url, "", 0) != 0) {
        conn_close(c);
        return;
    }
    q = strchr(c->url.data, '?');
    if (q)
        *q++ = '\0';
    r->conn = c;
    r->method = (enum http_method)c->parser.method;
    r->path = c->url.data;
    r->query = q ? q : "";
    r->body = c->body.data;
    r->body_len = c->body.len;
    r->authorization = c->auth;
    r->remote_addr = c->remote;
    r->remote_is_loopback = c->loopback;
    r->forwarded = c->forwarded;
    r->start_ns = uv_hrtime();
    r->route = -1;
    c->state = CONN_HANDLING;
    c->srv->handler(r, c->srv->handler_arg);
    if (c->state == CONN_HANDLING && !c->deferred) {
        log_error("http", "handler returned without an answer path=%s", r->path);
        http_respond_error(r, 500, "internal error");
    }
}

/* Status for a parser error that our callbacks did not set. */
static int parser_error_status(enum http_errno e, const char **msg)
{
    switch (e) {
    case HPE_INVALID_TRANSFER_ENCODING:
        *msg = "only the chunked transfer coding is supported";
        return 501;
    case HPE_UNEXPECTED_CONTENT_LENGTH:
        *msg = "conflicting Content-Length or Transfer-Encoding";
        return 400;
    case HPE_HEADER_OVERFLOW:
        *msg = "header block too large";
        return 431;
    default:
        *msg = http_errno_description(e);
        return 400;
    }
}

static void fail_request(http_conn *c, int status, const char *msg)
{
    http_request *r = &c->req;

    /* The request may be half-parsed: answer on a minimal request. */
    r->conn = c;
    r->path = "";
    r->start_ns = uv_hrtime();
    r->route = -1;
    c->keep_alive = 0;
    c->state = CONN_HANDLING;
    log_info("http", "refused status=%d remote=%s reason=\"%s\"", status, c->remote, msg);
    http_respond_error(r, status, msg);
}

static void compact_input(http_conn *c)
{
    if (c->in_off == c->in.len) {
        c->in_off = 0;
        if (c->in.cap > 16384)
            lj_buf_cleanup(&c->in);     /* idle connections keep no large buffer */
        else
            lj_buf_reset(&c->in);
    }
}

/* Bytes given to uv_write() that the kernel has not taken yet. */
static size_t unsent_bytes(const http_conn *c)
{
    return c->tcp.write_queue_size;
}

/* A client that does not read its answers is not read either: returns
 * nonzero, with reads stopped, while the unsent output of 'c' is above the
 * bound. Its pipelined requests then wait unparsed in c->in, so neither
 * input nor output grows; on_write() resumes, on_timer() closes. */
static int hold_for_output(http_conn *c)
{
    if (c->out_paused)
        return 1;
    if (unsent_bytes(c) <= c->srv->lim.max_unsent)
        return 0;
    c->out_paused = 1;
    c->out_paused_ms = uv_now(c->srv->loop);
    uv_read_stop((uv_stream_t *)&c->tcp);
    return 1;
}

static void process_input(http_conn *c)
{
    c->in_process = 1;
    while (c->state == CONN_READING && !hold_for_output(c) && c->in_off < c->in.len) {
        size_t len;
        size_t n;
        int was_body;
        enum http_errno e;

        if (!c->headers_scanned) {
            int rc = scan_header_block(c);

            if (rc == 0)
                break;
            if (rc < 0) {
                fail_request(c, c->err_status, c->err_msg);
                break;
            }
            c->headers_scanned = 1;
        }
        if (parser_window(c, &len) != 0) {
            fail_request(c, c->err_status, c->err_msg);
            break;
        }
        if (len == 0)
            break;
        was_body = c->in_body;
        n = http_parser_execute(&c->parser, &parser_settings, c->in.data + c->in_off, len);
        c->in_off += n;
        if (!was_body)
            c->head_left -= n;
        else if (c->chunked)
            c->checked_ahead -= n;
        e = HTTP_PARSER_ERRNO(&c->parser);
        if (c->err_status) {
            fail_request(c, c->err_status, c->err_msg);
        } else if (e == HPE_PAUSED) {
            http_parser_pause(&c->parser, 0);
            next_request(c);
            dispatch(c);
        } else if (e != HPE_OK) {
            const char *msg;
            int status = parser_error_status(e, &msg);

            fail_request(c, status, msg);
        }
    }
    if (c->state != CONN_CLOSING)
        compact_input(c);
    c->in_process = 0;
}

/* ------------------------------------------------------------------------
 * libuv callbacks
 * ------------------------------------------------------------------------ */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    http_conn *c = h->data;

    (void)suggested;
    buf->base = c->srv->readbuf;
    buf->len = sizeof(c->srv->readbuf);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    http_conn *c = s->data;

    if (n < 0) {
        conn_close(c);
        return;
    }
    if (c->state == CONN_LINGER) {
        c->lingered += (size_t)n;
        if (c->lingered > 65536)
            conn_close(c);
        return;
    }
    if (n == 0 || (c->state != CONN_READING && c->state != CONN_HANDLING))
        return;
    if (lj_buf_append(&c->in, buf->base, (size_t)n) != 0) {
        conn_close(c);
        return;
    }
    if (c->first_byte_ms == 0)
        c->first_byte_ms = uv_now(c->srv->loop);
    if (c->state == CONN_READING) {
        process_input(c);
        arm_timer(c);
    } else if (c->in.len - c->in_off > c->srv->lim.max_body + c->srv->lim.max_header_block) {
        /* A client pipelining faster than we answer waits in TCP, not in our memory. */
        c->read_paused = 1;
        uv_read_stop(s);
    }
}

static void on_timer(uv_timer_t *t)
{
    http_conn *c = t->data;

    if (c->state == CONN_LINGER) {
        conn_close(c);
    } else if (c->state == CONN_READING && c->out_paused) {
        log_info("http", "send timeout remote=%s unsent=%zu", c->remote, unsent_bytes(c));
        if (c->srv->obs.on_send_timeout)
            c->srv->obs.on_send_timeout(c->srv->obs.arg);
        conn_close(c);
    } else if (c->state == CONN_READING) {
        if (c->first_byte_ms == 0)
            conn_close(c);  /* idle keep-alive connection */
        else
            fail_request(c, 408, "request not received in time");
    }
}

/* Sets the deadline of the connection's current state (SPEC §2.3). */
static void arm_timer(http_conn *c)
{
    const http_limits *lim = &c->srv->lim;
    uint64_t now = uv_now(c->srv->loop);
    uint64_t deadline;

    if (c->state != CONN_READING) {
        uv_timer_stop(&c->timer);
        return;
    }
    if (c->out_paused) {
        deadline = c->out_paused_ms + lim->send_timeout_ms;
    } else if (c->first_byte_ms == 0) {
        deadline = now + lim->keepalive_ms;
    } else if (c->headers_ms == 0) {
        deadline = c->first_byte_ms + lim->header_timeout_ms;
    } else {
        deadline = now + lim->body_idle_ms;
        if (c->headers_ms + lim->body_total_ms < deadline)
            deadline = c->headers_ms + lim->body_total_ms;
    }
    uv_timer_start(&c->timer, on_timer, deadline > now ? deadline - now : 0, 0);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    http_conn *c = req->handle->data;

    if (status < 0 || c->state == CONN_CLOSING) {
        conn_close(c);
        return;
    }
    c->state = CONN_LINGER;
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
        conn_close(c);
        return;
    }
    uv_timer_start(&c->timer, on_timer, c->srv->lim.linger_ms, 0);
}

/* The unsent output of 'c' drained to the bound: reads and the waiting
 * pipelined requests go on, under the deadline of the request they are at. */
static void resume_after_drain(http_conn *c)
{
    c->out_paused = 0;
    c->first_byte_ms = c->in.len > c->in_off ? uv_now(c->srv->loop) : 0;
    process_input(c);
    if ((c->state == CONN_READING || c->state == CONN_HANDLING) && !c->out_paused) {
        c->read_paused = 0;
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    }
    arm_timer(c);
}

static void on_write(uv_write_t *w, int status)
{
    write_req *wr = (write_req *)w;
    http_conn *c = w->handle->data;

    free(wr->data);
    free(wr);
    if (status < 0) {
        conn_close(c);
    } else if (c->out_paused && c->state == CONN_READING &&
               unsent_bytes(c) <= c->srv->lim.max_unsent) {
        resume_after_drain(c);
    } else if (c->state == CONN_FLUSHING) {
        /* Close gently: stop writing, then read and discard for a while, so
         * the client reads our answer instead of a connection reset. */
        if (uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, on_shutdown) != 0)
            conn_close(c);
    }
}

static void set_remote(http_conn *c)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);

    c->remote[0] = '\0';
    c->loopback = 0;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) != 0)
        return;
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;

        uv_ip4_name(a, c->remote, sizeof(c->remote));
        c->loopback = (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;

        uv_ip6_name(a, c->remote, sizeof(c->remote));
        c->loopback = strcmp(c->remote, "::1") == 0 || strncmp(c->remote, "::ffff:127.", 11) == 0;
    }
}

/* Accepts the connection waiting in the listener. */
static void accept_one(http_server *s)
{
    http_conn *c;

    if ((c = calloc(1, sizeof(*c))) == NULL)
        return;
    c->srv = s;
    c->refs = 2;    /* tcp and timer handles */
    c->state = CONN_READING;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    if (s->obs.on_connections)
        s->obs.on_connections(1, s->obs.arg);
    if (uv_accept((uv_stream_t *)&s->listener, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    set_remote(c);
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
        conn_close(c);
        return;
    }
    arm_timer(c);
}

static void on_connection(uv_stream_t *listener, int status)
{
    http_server *s = listener->data;

    if (status < 0 || s->closing)
        return;
    if (s->nconns >= s->lim.max_connections) {
        /* Not accepting makes libuv stop watching the listener: further
         * clients wait in the kernel's backlog until a connection closes. */
        s->accept_paused = 1;
        return;
    }
    accept_one(s);
}

/* ------------------------------------------------------------------------
 * Responses
 * ------------------------------------------------------------------------ */

void http_defer(http_request *req)
{
    req->conn->deferred = 1;
    req->conn->refs++;
}

static int write_response(http_conn *c, int status, const char *type,
                          const char *extra_headers, const char *body, size_t body_len)
{
    const char *conn_hdr = c->keep_alive ? "keep-alive" : "close";
    write_req *wr;
    lj_buf out;
    uv_buf_t b;
    size_t len;

    lj_buf_init(&out);
    if (lj_buf_printf(&out,
                      "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n"
                      "Content-Length: %zu\r\nConnection: %s\r\n%s\r\n",
                      status, http_status_str((enum http_status)status), type, body_len, conn_hdr,
                      extra_headers ? extra_headers : "") != 0 ||
        lj_buf_append(&out, body, body_len) != 0 || (wr = malloc(sizeof(*wr))) == NULL) {
        lj_buf_cleanup(&out);
        return -1;
    }
    wr->data = lj_buf_take(&out, &len);
    b = uv_buf_init(wr->data, (unsigned int)len);
    if (uv_write(&wr->w, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
        free(wr->data);
        free(wr);
        return -1;
    }
    return 0;
}

void http_respond(http_request *req, int status, const char *extra_headers, const char *body,
                  size_t body_len)
{
    http_respond_typed(req, status, "application/json", extra_headers, body, body_len);
}

void http_respond_typed(http_request *req, int status, const char *content_type,
                        const char *extra_headers, const char *body, size_t body_len)
{
    http_conn *c = req->conn;
    int was_deferred = c->deferred;

    c->deferred = 0;
    if (c->state == CONN_HANDLING && c->srv->obs.on_response)
        c->srv->obs.on_response(req, status, c->srv->obs.arg);
    if (c->state == CONN_HANDLING) {
        if (status >= 400 || c->srv->draining)
            c->keep_alive = 0;
        if (write_response(c, status, content_type, extra_headers, body, body_len) != 0) {
            conn_close(c);
        } else if (!c->keep_alive) {
            c->state = CONN_FLUSHING;
            uv_read_stop((uv_stream_t *)&c->tcp);
        } else {
            reset_request(c);
            c->state = CONN_READING;
            c->headers_ms = 0;
            c->first_byte_ms = c->in.len > c->in_off ? uv_now(c->srv->loop) : 0;
            if (!c->in_process) {
                process_input(c);
                arm_timer(c);
            }
            if (c->read_paused && c->state == CONN_READING && !c->out_paused) {
                c->read_paused = 0;
                uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
            }
        }
    }
    if (was_deferred)
        conn_unref(c);
}

void http_respond_error(http_request *req, int status, const char *msg)
{
    lj_buf b;

    lj_buf_init(&b);
    if (lj_buf_puts(&b, "{\"status\":\"error\",\"message\":") != 0 ||
        lj_buf_json_str(&b, msg, strlen(msg)) != 0 || lj_buf_puts(&b, "}") != 0) {
        lj_buf_cleanup(&b);
        conn_close(req->conn);
        return;
    }
    http_respond(req, status, NULL, b.data, b.len);
    lj_buf_cleanup(&b);
}

/* ------------------------------------------------------------------------
 * Server
 * ------------------------------------------------------------------------ */

void http_server_observe(http_server *s, const http_observer *obs)
{
    s->obs = *obs;
}

http_server *http_server_new(uv_loop_t *loop, const http_limits *lim, http_handler_fn fn,
                             void *arg)
{
    http_server *s = calloc(1, sizeof(*s));

    if (s == NULL)
        return NULL;
    s->loop = loop;
    s->lim = *lim;
    s->handler = fn;
    s->handler_arg = arg;
    parser_settings.on_message_begin = on_message_begin;
    parser_settings.on_url = on_url;
    parser_settings.on_header_field = on_header_field;
    parser_settings.on_header_value = on_header_value;
    parser_settings.on_headers_complete = on_headers_complete;
    parser_settings.on_body = on_body;
    parser_settings.on_message_complete = on_message_complete;
    parser_settings.on_chunk_header = on_chunk_header;
    /* Process-global; our own scan already caps the block at lim->max_header_block. */
    http_parser_set_max_header_size((uint32_t)lim->max_header_block + 2);
    uv_tcp_init(loop, &s->listener);
    s->listener.data = s;
    return s;
}

int http_server_listen(http_server *s, const char *host, int port)
{
    struct sockaddr_storage addr;
    socklen_t len = sizeof(struct sockaddr_in);
    int one = 1;
    int fd;
    int rc;

    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&addr) != 0) {
        if ((rc = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr)) != 0)
            return rc;
        len = sizeof(struct sockaddr_in6);
    }
    /* SO_REUSEPORT lets every loop thread bind its own listener to the one
     * port, and the kernel spread connections over them (libuv 1.44 has no
     * flag for it, so the socket is made here). */
    if ((fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0)
        return uv_translate_sys_error(errno);
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
        bind(fd, (struct sockaddr *)&addr, len) != 0) {
        rc = uv_translate_sys_error(errno);
        close(fd);
        return rc;
    }
    if ((rc = uv_tcp_open(&s->listener, fd)) != 0) {
        close(fd);
        return rc;
    }
    return uv_listen((uv_stream_t *)&s->listener, 4096, on_connection);
}

int http_server_port(const http_server *s)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);

    if (uv_tcp_getsockname(&s->listener, (struct sockaddr *)&ss, &len) != 0)
        return -1;
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void close_listener(http_server *s)
{
    s->closing = 1;
    if (!s->listener_closed)
        uv_close((uv_handle_t *)&s->listener, NULL);
    s->listener_closed = 1;
}

/* Nothing of a request received, nothing to send: safe to close. */
static int conn_idle(const http_conn *c)
{
    return c->state == CONN_LINGER ||
           (c->state == CONN_READING && c->first_byte_ms == 0 && c->in.len == c->in_off);
}

void http_server_drain(http_server *s)
{
    http_conn *c;
    http_conn *next;

    s->draining = 1;
    close_listener(s);
    for (c = s->conns; c; c = next) {
        next = c->next;
        if (conn_idle(c))
            conn_close(c);
    }
}

int http_server_busy(const http_server *s)
{
    const http_conn *c;
    int n = 0;

    for (c = s->conns; c; c = c->next)
        n += c->state != CONN_LINGER;
    return n;
}

/* Answers the request 'c' is handling with 503 on the owner's behalf; the
 * owner's own answer, later, is dropped (the connection is no longer
 * CONN_HANDLING) and releases its reference as usual. */
static void expire_request(http_conn *c)
{
    static const char body[] = "{\"status\":\"error\",\"message\":\"shutting down, retry "
                               "later\"}";
    http_server *s = c->srv;

    if (s->obs.on_response)
        s->obs.on_response(&c->req, 503, s->obs.arg);
    c->keep_alive = 0;
    if (write_response(c, 503, "application/json", "Retry-After: 1\r\n", body,
                       sizeof(body) - 1) != 0) {
        conn_close(c);
        return;
    }
    c->state = CONN_FLUSHING;
    uv_read_stop((uv_stream_t *)&c->tcp);
}

void http_server_expire(http_server *s)
{
    http_conn *c;
    http_conn *next;

    for (c = s->conns; c; c = next) {
        next = c->next;
        if (c->state == CONN_HANDLING)
            expire_request(c);
        else if (c->state == CONN_READING)
            conn_close(c);  /* a request still arriving */
    }
}

void http_server_close(http_server *s)
{
    close_listener(s);
    while (s->conns)
        conn_close(s->conns);
}

void http_server_free(http_server *s)
{
    free(s);
}
