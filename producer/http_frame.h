/* http_frame.h -- the request framing rules that http-parser does not
 * enforce (SPEC §2.3, SECURITY.md), as pure functions.
 *
 * The installed http-parser accepts bare LF line ends, obs-fold lines, a
 * space before the colon and other leniencies that let requests be
 * smuggled. Every header block is therefore scanned here before the parser
 * sees it, and every chunked body (size lines, chunk ends, trailers) is
 * checked as it arrives, by a small state machine the caller keeps per
 * request. No I/O and no global state: safe from any thread, and the fuzz
 * target's entry points.
 */
#ifndef LJ_PRODUCER_HTTP_FRAME_H
#define LJ_PRODUCER_HTTP_FRAME_H

#include <stddef.h>
#include <stdint.h>

typedef struct http_limits {
    size_t max_body;            /* 413 above */
    size_t max_request_line;    /* 414 above */
    size_t max_header_block;    /* 431 above; also the trailer section (400 above) */
    size_t max_header_line;     /* 431 above; also one trailer line (400 above) */
    size_t max_chunk_line;      /* one chunk-size line with its extensions (400 above) */
    int max_headers;            /* 431 above; also trailer fields (400 above) */
    int max_connections;        /* beyond: new connections wait in the backlog */
    unsigned header_timeout_ms; /* first byte to end of headers, else 408 */
    unsigned body_idle_ms;      /* between reads of a body, else 408 */
    unsigned body_total_ms;     /* end of headers to end of body, else 408 */
    unsigned keepalive_ms;      /* idle connection between requests: closed */
    unsigned linger_ms;         /* after an error answer: read and discard this long */
    size_t max_unsent;          /* unsent output above this: the connection is not read */
    unsigned send_timeout_ms;   /* unsent output above max_unsent this long: closed */
} http_limits;

/* Fills 'lim' with the SPEC §2.3 defaults and 'max_body'. */
void http_limits_default(http_limits *lim, size_t max_body);

/* Scans the header block at the start of 'n' bytes of 'data' (empty lines
 * before it are skipped). Returns 1 when a complete block (up to CRLFCRLF)
 * follows every rule, with its length (from data[0], through the final LF)
 * in 'block_len'; 0 when more bytes are needed; -1 when the request is
 * refused, with the HTTP status in 'status' and a static reason in 'msg':
 * 400 for a bare CR or LF, a control byte other than HTAB or a folded line,
 * 414 for a long request line, 431 for a long header line, too many headers
 * or a large block. Out-params are written only for the return they name. */
int http_frame_scan(const char *data, size_t n, const http_limits *lim, size_t *block_len,
                    int *status, const char **msg);

/* Where a chunked body's check stands between two reads (RFC 9112 §7.1):
 *
 *   chunk-size [ *( BWS ";" BWS token [ BWS "=" BWS ( token / quoted-string ) ] ) ] CRLF
 *   chunk-data CRLF              ... repeated; then a size of 0 and
 *   *( field-name ":" field-value CRLF ) CRLF
 *
 * Embedded in the connection; no pointers, no cleanup. */
typedef struct http_chunked {
    int state;
    uint64_t size;          /* the chunk size being read, then its data bytes left */
    int digits;             /* hex digits of the size so far */
    size_t line_len;        /* bytes of the current size or trailer line */
    size_t trailer_len;     /* bytes of the trailer section */
    int trailers;           /* trailer fields */
} http_chunked;

/* Sets 'ck' to the start of a chunked body. */
void http_chunked_init(http_chunked *ck);

/* Checks the next 'n' bytes of a chunked body, continuing where the last
 * call on 'ck' stopped, so the body may arrive in any number of pieces.
 * Returns 1 when the body (its final CRLF included) ends within them, with
 * the bytes up to that end in 'used' (the rest is the next request; on a
 * finished body 'used' is 0); 0 when all 'n' bytes are valid and more are
 * needed ('used' = n); -1 when the body breaks a rule, with 400 in 'status'
 * and a static reason in 'msg': a size line that is not hex digits and
 * well-formed extensions ending in CRLF, longer than lim->max_chunk_line or
 * a size beyond 64 bits; chunk data not followed by exactly CRLF; a trailer
 * line that is not a field (token, colon, value without control bytes other
 * than HTAB) ending in CRLF, a folded one, or trailers beyond
 * lim->max_header_line, lim->max_header_block or lim->max_headers. A bare
 * CR or LF anywhere is refused. Chunk sizes are not compared with the body
 * limit here: the caller does that (413). */
int http_chunked_scan(http_chunked *ck, const char *data, size_t n, const http_limits *lim,
                      size_t *used, int *status, const char **msg);

/* Nonzero when 'ch' may appear in a header name (RFC 9110 tchar). */
int http_frame_is_tchar(unsigned char ch);

/* Nonzero when the lower-case header name 'name' ('len' bytes) is one a
 * proxy adds to say whom it forwards for: Forwarded, Via, X-Forwarded-For,
 * -Host, -Proto, -Port, X-Real-IP, X-Client-IP, X-Cluster-Client-IP,
 * True-Client-IP, CF-Connecting-IP. Length first, so most names cost one
 * switch. */
int http_frame_is_forwarding(const char *name, size_t len);

#endif
