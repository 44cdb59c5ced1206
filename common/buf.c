#include "buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

void lj_buf_init(lj_buf *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void lj_buf_cleanup(lj_buf *b)
{
    free(b->data);
    lj_buf_init(b);
}

void lj_buf_reset(lj_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

int lj_buf_reserve(lj_buf *b, size_t extra)
{
    size_t need = b->len + extra + 1;
    size_t cap;
    char *p;

    if (need < b->len)
        return LJ_ENOMEM;
    if (need <= b->cap)
        return 0;
    cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    if ((p = realloc(b->data, cap)) == NULL)
        return LJ_ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int lj_buf_append(lj_buf *b, const void *p, size_t n)
{
    if (lj_buf_reserve(b, n) != 0)
        return LJ_ENOMEM;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int lj_buf_puts(lj_buf *b, const char *s)
{
    return lj_buf_append(b, s, strlen(s));
}

int lj_buf_printf(lj_buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (lj_buf_reserve(b, 64) != 0)
        return LJ_ENOMEM;
    va_start(ap, fmt);
    n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0)
        return LJ_EINVAL;
    if ((size_t)n >= b->cap - b->len) {
        if (lj_buf_reserve(b, (size_t)n) != 0)
            return LJ_ENOMEM;
        va_start(ap, fmt);
        vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
    }
    b->len += (size_t)n;
    return 0;
}

int lj_buf_int(lj_buf *b, long long v)
{
    char tmp[24];
    char *p = tmp + sizeof(tmp);
    unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;

    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *--p = '-';
    return lj_buf_append(b, p, (size_t)(tmp + sizeof(tmp) - p));
}

int lj_buf_json_str(lj_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t i;

    /* Worst case every byte becomes \u00XX (6 bytes), plus the quotes. */
    if (n > ((size_t)-1 - 2) / 6 || lj_buf_reserve(b, n * 6 + 2) != 0)
        return LJ_ENOMEM;
    b->data[b->len++] = '"';
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char *o = b->data + b->len;

        if (c == '"' || c == '\\') {
            o[0] = '\\';
            o[1] = (char)c;
            b->len += 2;
        } else if (c == '\n' || c == '\t' || c == '\r') {
            o[0] = '\\';
            o[1] = c == '\n' ? 'n' : c == '\t' ? 't' : 'r';
            b->len += 2;
        } else if (c < 0x20) {
            memcpy(o, "\\u00", 4);
            o[4] = hex[c >> 4];
            o[5] = hex[c & 15];
            b->len += 6;
        } else {
            o[0] = (char)c;
            b->len += 1;
        }
    }
    b->data[b->len++] = '"';
    b->data[b->len] = '\0';
    return 0;
}

char *lj_buf_take(lj_buf *b, size_t *len)
{
    char *p = b->data;

    if (len)
        *len = b->len;
    lj_buf_init(b);
    return p;
}
