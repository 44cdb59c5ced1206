/* http_frame.h -- the request framing rules that http-parser does not
 * enforce (SPEC §2.3, SECURITY.md), as pure functions.
 *
 * The installed http-parser accepts bare LF line ends, obs-fold lines, a
 * space before the colon and other leniencies that let requests be
 * smuggled. Every header block is therefore scanned here before the parser
 * sees it. No state, no I/O: safe from any thread, and the fuzz target's
 * entry point.
 */
#ifndef LJ_PRODUCER_HTTP_FRAME_H
#define LJ_PRODUCER_HTTP_FRAME_H

#include <stddef.h>

typedef struct http_limits {
    size_t max_body;            /* 413 above */
    size_t max_request_line;    /* 414 above */
    size_t max_header_block;    /* 431 above */
    size_t max_header_line;     /* 431 above */
    int max_headers;            /* 431 above */
    int max_connections;        /* beyond: new connections wait in the backlog */
    unsigned header_timeout_ms; /* first byte to end of headers, else 408 */
    unsigned body_idle_ms;      /* between reads of a body, else 408 */
    unsigned body_total_ms;     /* end of headers to end of body, else 408 */
    unsigned keepalive_ms;      /* idle connection between requests: closed */
    unsigned linger_ms;         /* after an error answer: read and discard this long */
} http_limits;

/* Fills 'lim' with the SPEC §2.3 defaults and 'max_body'. */
void http_limits_default(http_limits *lim, size_t max_body);

/* Scans the header block at the start of 'n' bytes of 'data' (empty lines
 * before it are skipped). Returns 1 when a complete block (up to CRLFCRLF)
 * follows every rule; 0 when more bytes are needed; -1 when the request is
 * refused, with the HTTP status in 'status' and a static reason in 'msg':
 * 400 for a bare CR or LF, a control byte other than HTAB or a folded line,
 * 414 for a long request line, 431 for a long header line, too many headers
 * or a large block. */
int http_frame_scan(const char *data, size_t n, const http_limits *lim, int *status,
                    const char **msg);

/* Nonzero when 'ch' may appear in a header name (RFC 9110 tchar). */
int http_frame_is_tchar(unsigned char ch);

/* Nonzero when the lower-case header name 'name' ('len' bytes) is one a
 * proxy adds to say whom it forwards for: Forwarded, Via, X-Forwarded-For,
 * -Host, -Proto, -Port, X-Real-IP, X-Client-IP, X-Cluster-Client-IP,
 * True-Client-IP, CF-Connecting-IP. Length first, so most names cost one
 * switch. */
int http_frame_is_forwarding(const char *name, size_t len);

#endif
