#include "http_frame.h"

#include <string.h>

void http_limits_default(http_limits *lim, size_t max_body)
{
    lim->max_body = max_body;
    lim->max_request_line = 2048;
    lim->max_header_block = 8192;
    lim->max_header_line = 4096;
    lim->max_headers = 64;
    lim->max_connections = 16384;
    lim->header_timeout_ms = 10000;
    lim->body_idle_ms = 10000;
    lim->body_total_ms = 60000;
    lim->keepalive_ms = 15000;
    lim->linger_ms = 2000;
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

int http_frame_scan(const char *data, size_t n, const http_limits *lim, int *status,
                    const char **msg)
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
            if (lines > 0 && len == 0)
                return 1;
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
