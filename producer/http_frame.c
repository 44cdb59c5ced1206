#include "http_frame.h"

#include <string.h>

void http_limits_default(http_limits *lim, size_t max_body)
{
    lim->max_body = max_body;
    lim->max_request_line = 2048;
    lim->max_header_block = 8192;
    lim->max_header_line = 4096;
    lim->max_chunk_line = 4096;
    lim->max_headers = 64;
    lim->max_connections = 16384;
    lim->header_timeout_ms = 10000;
    lim->body_idle_ms = 10000;
    lim->body_total_ms = 60000;
    lim->keepalive_ms = 15000;
    lim->linger_ms = 2000;
    lim->max_unsent = 256 * 1024;
    lim->send_timeout_ms = 10000;
}

int http_frame_is_tchar(unsigned char ch)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";

    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch != '\0' && strchr(extra, ch) != NULL);
}

static int refuse(int *status, const char **msg, int code, const char *text)
{
    *status = code;
    *msg = text;
    return -1;
}

int http_frame_scan(const char *data, size_t n, const http_limits *lim, size_t *block_len,
                    int *status, const char **msg)
{
    const unsigned char *p = (const unsigned char *)data;
    size_t i = 0;
    size_t start;
    size_t line_start;
    int lines = 0;

    while (i + 1 < n && p[i] == '\r' && p[i + 1] == '\n')
        i += 2;     /* RFC 9112 §2.2: empty lines before a request are ignored */
    start = line_start = i;
    for (; i < n; i++) {
        unsigned char ch = p[i];

        if (ch == '\r') {
            size_t len = i - line_start;

            if (i + 1 >= n)
                return 0;
            if (p[i + 1] != '\n')
                return refuse(status, msg, 400, "bare CR in header");
            if (lines == 0 && len > lim->max_request_line)
                return refuse(status, msg, 414, "request line too long");
            if (lines > 0 && len == 0) {
                *block_len = i + 2;
                return 1;
            }
            if (lines > 0 && len > lim->max_header_line)
                return refuse(status, msg, 431, "header line too long");
            if (++lines > lim->max_headers + 1)
                return refuse(status, msg, 431, "too many headers");
            i++;
            line_start = i + 1;
            continue;
        }
        if (ch == '\n')
            return refuse(status, msg, 400, "bare LF in header");
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return refuse(status, msg, 400, "control character in header");
        if (lines > 0 && i == line_start && (ch == ' ' || ch == '\t'))
            return refuse(status, msg, 400, "folded header line");
        if (lines == 0 && i - line_start >= lim->max_request_line)
            return refuse(status, msg, 414, "request line too long");
        if (i - start >= lim->max_header_block)
            return refuse(status, msg, 431, "header block too large");
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Chunked bodies (RFC 9112 §7.1), one byte at a time except chunk data
 * ------------------------------------------------------------------------ */

enum chunk_state {
    CK_SIZE,            /* hex digits */
    CK_EXT_BWS,         /* BWS before ";" */
    CK_EXT_NAME_START,  /* after ";": BWS, then a token */
    CK_EXT_NAME,
    CK_EXT_NAME_BWS,    /* BWS after the name: "=" or ";" must follow */
    CK_EXT_VAL_START,   /* after "=": BWS, then a token or a quoted-string */
    CK_EXT_TOKEN,
    CK_EXT_QUOTED,
    CK_EXT_QPAIR,       /* after a backslash in a quoted-string */
    CK_EXT_AFTER_VAL,   /* after the closing DQUOTE */
    CK_SIZE_LF,         /* CR seen, LF must follow */
    CK_DATA,
    CK_DATA_CR,
    CK_DATA_LF,
    CK_TR_START,        /* start of a trailer line, or the final CRLF */
    CK_TR_NAME,
    CK_TR_VALUE,
    CK_TR_LF,
    CK_END_LF,
    CK_DONE
};

static int is_ws(unsigned char ch)
{
    return ch == ' ' || ch == '\t';
}

static int hex_value(unsigned char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* qdtext (RFC 9110 §5.6.4): HTAB, SP, VCHAR but DQUOTE and backslash, obs-text. */
static int is_qdtext(unsigned char ch)
{
    return ch == '\t' || ch == ' ' || ch == 0x21 || (ch >= 0x23 && ch <= 0x5b) ||
           (ch >= 0x5d && ch <= 0x7e) || ch >= 0x80;
}

/* What may follow a complete chunk size, extension name or value. */
static const char *after_item(http_chunked *ck, unsigned char ch, int may_assign)
{
    if (ch == '\r')
        ck->state = CK_SIZE_LF;
    else if (ch == ';')
        ck->state = CK_EXT_NAME_START;
    else if (is_ws(ch))
        ck->state = may_assign ? CK_EXT_NAME_BWS : CK_EXT_BWS;
    else if (ch == '=' && may_assign)
        ck->state = CK_EXT_VAL_START;
    else
        return "invalid chunk extension";
    return NULL;
}

/* One byte of the chunk extensions. */
static const char *ext_byte(http_chunked *ck, unsigned char ch)
{
    switch (ck->state) {
    case CK_EXT_BWS:
        if (ch == ';')
            ck->state = CK_EXT_NAME_START;
        else if (!is_ws(ch))
            return "invalid chunk extension";
        return NULL;
    case CK_EXT_NAME_START:
        if (http_frame_is_tchar(ch))
            ck->state = CK_EXT_NAME;
        else if (!is_ws(ch))
            return "invalid chunk extension";
        return NULL;
    case CK_EXT_NAME:
        return http_frame_is_tchar(ch) ? NULL : after_item(ck, ch, 1);
    case CK_EXT_NAME_BWS:
        if (ch == '=')
            ck->state = CK_EXT_VAL_START;
        else if (ch == ';')
            ck->state = CK_EXT_NAME_START;
        else if (!is_ws(ch))
            return "invalid chunk extension";
        return NULL;
    case CK_EXT_VAL_START:
        if (http_frame_is_tchar(ch))
            ck->state = CK_EXT_TOKEN;
        else if (ch == '"')
            ck->state = CK_EXT_QUOTED;
        else if (!is_ws(ch))
            return "invalid chunk extension";
        return NULL;
    case CK_EXT_TOKEN:
        return http_frame_is_tchar(ch) ? NULL : after_item(ck, ch, 0);
    case CK_EXT_QUOTED:
        if (ch == '"')
            ck->state = CK_EXT_AFTER_VAL;
        else if (ch == '\\')
            ck->state = CK_EXT_QPAIR;
        else if (!is_qdtext(ch))
            return "invalid chunk extension";
        return NULL;
    case CK_EXT_QPAIR:
        if (ch != '\t' && ch != ' ' && (ch < 0x21 || ch == 0x7f))
            return "invalid chunk extension";
        ck->state = CK_EXT_QUOTED;
        return NULL;
    default:    /* CK_EXT_AFTER_VAL */
        return after_item(ck, ch, 0);
    }
}

/* One byte of a chunk-size line: the size, its extensions, its CRLF. */
static const char *size_line_byte(http_chunked *ck, unsigned char ch, const http_limits *lim)
{
    int v;

    if (++ck->line_len > lim->max_chunk_line)
        return "chunk size line too long";
    if (ch == '\n' && ck->state != CK_SIZE_LF)
        return "bare LF in chunk size line";
    if (ck->state == CK_SIZE_LF) {
        if (ch != '\n')
            return "bare CR in chunk size line";
        ck->state = ck->size == 0 ? CK_TR_START : CK_DATA;
        ck->line_len = 0;
        return NULL;
    }
    if (ck->state != CK_SIZE)
        return ext_byte(ck, ch);
    if ((v = hex_value(ch)) >= 0) {
        if (ck->size > (UINT64_MAX >> 4))
            return "chunk size too large";
        ck->size = (ck->size << 4) | (uint64_t)v;
        ck->digits++;
        return NULL;
    }
    if (ck->digits == 0)
        return "invalid chunk size";
    return after_item(ck, ch, 0) ? "invalid chunk size" : NULL;
}

/* One byte of the CRLF after chunk data. */
static const char *data_end_byte(http_chunked *ck, unsigned char ch)
{
    if (ck->state == CK_DATA_CR && ch == '\r') {
        ck->state = CK_DATA_LF;
        return NULL;
    }
    if (ck->state == CK_DATA_LF && ch == '\n') {
        ck->state = CK_SIZE;
        ck->size = 0;
        ck->digits = 0;
        return NULL;
    }
    return "chunk data not followed by CRLF";
}

/* One byte of the trailer section, up to its final CRLF. */
static const char *trailer_byte(http_chunked *ck, unsigned char ch, const http_limits *lim)
{
    if (++ck->trailer_len > lim->max_header_block)
        return "trailer section too large";
    if (++ck->line_len > lim->max_header_line)
        return "trailer line too long";
    if (ch == '\n' && ck->state != CK_TR_LF && ck->state != CK_END_LF)
        return "bare LF in trailer";
    switch (ck->state) {
    case CK_TR_START:
        if (ch == '\r') {
            ck->state = CK_END_LF;
        } else if (is_ws(ch)) {
            return "folded trailer line";
        } else if (http_frame_is_tchar(ch)) {
            if (++ck->trailers > lim->max_headers)
                return "too many trailer fields";
            ck->state = CK_TR_NAME;
        } else {
            return "invalid trailer field name";
        }
        return NULL;
    case CK_TR_NAME:
        if (ch == ':')
            ck->state = CK_TR_VALUE;
        else if (!http_frame_is_tchar(ch))
            return "invalid trailer field name";
        return NULL;
    case CK_TR_VALUE:
        if (ch == '\r')
            ck->state = CK_TR_LF;
        else if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return "control character in trailer";
        return NULL;
    default:    /* CK_TR_LF, CK_END_LF */
        if (ch != '\n')
            return "bare CR in trailer";
        ck->state = ck->state == CK_TR_LF ? CK_TR_START : CK_DONE;
        ck->line_len = 0;
        return NULL;
    }
}

void http_chunked_init(http_chunked *ck)
{
    memset(ck, 0, sizeof(*ck));
    ck->state = CK_SIZE;
}

/* Skips up to 'avail' bytes of chunk data; returns how many. */
static size_t skip_data(http_chunked *ck, size_t avail)
{
    size_t k = ck->size < (uint64_t)avail ? (size_t)ck->size : avail;

    ck->size -= k;
    if (ck->size == 0)
        ck->state = CK_DATA_CR;
    return k;
}

int http_chunked_scan(http_chunked *ck, const char *data, size_t n, const http_limits *lim,
                      size_t *used, int *status, const char **msg)
{
    const unsigned char *p = (const unsigned char *)data;
    size_t i = 0;

    while (i < n && ck->state != CK_DONE) {
        const char *why;

        if (ck->state == CK_DATA) {
            i += skip_data(ck, n - i);
            continue;
        }
        if (ck->state <= CK_SIZE_LF)
            why = size_line_byte(ck, p[i], lim);
        else if (ck->state <= CK_DATA_LF)
            why = data_end_byte(ck, p[i]);
        else
            why = trailer_byte(ck, p[i], lim);
        if (why)
            return refuse(status, msg, 400, why);
        i++;
    }
    *used = i;
    return ck->state == CK_DONE ? 1 : 0;
}

int http_frame_is_forwarding(const char *name, size_t len)
{
    switch (len) {
    case 3:
        return memcmp(name, "via", 3) == 0;
    case 9:
        return memcmp(name, "forwarded", 9) == 0 || memcmp(name, "x-real-ip", 9) == 0;
    case 11:
        return memcmp(name, "x-client-ip", 11) == 0;
    case 14:
        return memcmp(name, "true-client-ip", 14) == 0;
    case 15:
        return memcmp(name, "x-forwarded-for", 15) == 0;
    case 16:
        return memcmp(name, "x-forwarded-host", 16) == 0 ||
               memcmp(name, "x-forwarded-port", 16) == 0 ||
               memcmp(name, "cf-connecting-ip", 16) == 0;
    case 17:
        return memcmp(name, "x-forwarded-proto", 17) == 0;
    case 19:
        return memcmp(name, "x-cluster-client-ip", 19) == 0;
    default:
        return 0;
    }
}
