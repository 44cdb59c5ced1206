#include "text.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

#define RETRY_AFTER_MAX_S 86400
#define BACKOFF_SERVER_MAX_MS 3600000L

int text_markdown_escape(lj_buf *out, const char *s)
{
    static const char special[] = "\\`*_[]<>|~";

    for (; s && *s; s++) {
        unsigned char ch = (unsigned char)*s;
        int rc;

        if (ch < 0x20 || ch == 0x7f)
            rc = lj_buf_append(out, " ", 1);
        else if (strchr(special, ch))
            rc = lj_buf_append(out, "\\", 1) || lj_buf_append(out, s, 1);
        else
            rc = lj_buf_append(out, s, 1);
        if (rc != 0)
            return LJ_ENOMEM;
    }
    return 0;
}

int text_form_escape(lj_buf *out, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";

    for (; s && *s; s++) {
        unsigned char ch = (unsigned char)*s;
        char enc[3] = {'%', hex[ch >> 4], hex[ch & 15]};
        int rc;

        if (isalnum(ch) || ch == '-' || ch == '.' || ch == '_' || ch == '~')
            rc = lj_buf_append(out, s, 1);
        else
            rc = lj_buf_append(out, enc, 3);
        if (rc != 0)
            return LJ_ENOMEM;
    }
    return 0;
}

static const text_var *find_var(const text_var *vars, size_t n, const char *name, size_t len)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (strlen(vars[i].name) == len && memcmp(vars[i].name, name, len) == 0)
            return &vars[i];
    return NULL;
}

static int put_value(lj_buf *out, const char *v, text_escape esc)
{
    if (v == NULL)
        v = "";
    if (esc == TEXT_ESC_JSON)
        return lj_buf_json_str(out, v, strlen(v)) ? LJ_ENOMEM : 0;
    return text_form_escape(out, v);
}

/* The length of the placeholder name at 'p' (after '{'): [a-z_]+ then '}';
 * 0 when 'p' does not start one. */
static size_t name_len(const char *p)
{
    size_t n = strspn(p, "abcdefghijklmnopqrstuvwxyz_");

    return n > 0 && p[n] == '}' ? n : 0;
}

int text_expand(lj_buf *out, const char *tmpl, const text_var *vars, size_t n, text_escape esc,
                const char **err)
{
    const char *p = tmpl;

    while (*p) {
        const char *open = strchr(p, '{');
        const text_var *v;
        size_t len;

        if (open == NULL)
            return lj_buf_puts(out, p) ? LJ_ENOMEM : 0;
        len = name_len(open + 1);
        if (lj_buf_append(out, p, (size_t)(open - p) + (len == 0)) != 0)
            return LJ_ENOMEM;
        p = open + 1;
        if (len == 0)
            continue;   /* a literal '{' (JSON's own braces) */
        if ((v = find_var(vars, n, open + 1, len)) == NULL) {
            *err = "unknown placeholder in template";
            return LJ_EINVAL;
        }
        if (put_value(out, v->value, esc) != 0)
            return LJ_ENOMEM;
        p = open + 1 + len + 1;
    }
    return 0;
}

static int month_of(const char *m)
{
    static const char names[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    const char *at;

    if (strlen(m) != 3 || (at = strstr(names, m)) == NULL || (at - names) % 3 != 0)
        return -1;
    return (int)(at - names) / 3;
}

/* "Sun, 06 Nov 1994 08:49:37 GMT" -> seconds since the epoch, or -1. */
static time_t imf_fixdate(const char *s)
{
    char wday[4];
    char mon[4];
    char zone[4];
    struct tm tm;
    int consumed = 0;

    memset(&tm, 0, sizeof(tm));
    if (sscanf(s, "%3[A-Za-z], %2d %3[A-Za-z] %4d %2d:%2d:%2d %3s%n", wday, &tm.tm_mday, mon,
               &tm.tm_year, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, zone, &consumed) != 8)
        return -1;
    if (s[consumed] != '\0' || strcmp(zone, "GMT") != 0 || (tm.tm_mon = month_of(mon)) < 0 ||
        tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 ||
        tm.tm_sec > 60 || tm.tm_year < 1970)
        return -1;
    tm.tm_year -= 1900;
    return timegm(&tm);
}

int text_retry_after(const char *value, time_t now, int *seconds)
{
    char v[64];
    size_t len;
    char *end;
    long n;
    time_t at;

    while (*value == ' ' || *value == '\t')
        value++;
    len = strlen(value);
    while (len > 0 && (value[len - 1] == ' ' || value[len - 1] == '\t'))
        len--;
    if (len == 0 || len >= sizeof(v))
        return LJ_EINVAL;
    memcpy(v, value, len);
    v[len] = '\0';
    if (isdigit((unsigned char)v[0])) {
        if (len > 9)    /* beyond a day anyway; also keeps strtol in range */
            n = RETRY_AFTER_MAX_S;
        else if ((n = strtol(v, &end, 10)) < 0 || *end != '\0')
            return LJ_EINVAL;
        *seconds = n > RETRY_AFTER_MAX_S ? RETRY_AFTER_MAX_S : (int)n;
        return 0;
    }
    if ((at = imf_fixdate(v)) == (time_t)-1)
        return LJ_EINVAL;
    n = at <= now ? 0 : (long)(at - now);
    *seconds = n > RETRY_AFTER_MAX_S ? RETRY_AFTER_MAX_S : (int)n;
    return 0;
}

long text_backoff_ms(int attempt, int base_ms, int max_ms, int retry_after_s, double jitter)
{
    long ms = base_ms;
    int i;

    for (i = 1; i < attempt && ms < max_ms; i++)
        ms *= 2;
    if (ms > max_ms)
        ms = max_ms;
    ms += (long)((double)ms * 0.1 * jitter);
    if (retry_after_s >= 0) {
        long server = (long)retry_after_s * 1000L;

        if (server > BACKOFF_SERVER_MAX_MS)
            server = BACKOFF_SERVER_MAX_MS;
        if (server > ms)
            ms = server;
    }
    return ms;
}

void text_url_host(const char *url, char *out, size_t outlen)
{
    const char *p = strstr(url, "://");
    const char *end;
    const char *at;
    size_t n;

    if (outlen == 0)
        return;
    if (p == NULL) {
        snprintf(out, outlen, "?");
        return;
    }
    p += 3;
    end = p + strcspn(p, "/?#");
    at = memchr(p, '@', (size_t)(end - p));
    if (at)
        p = at + 1;
    n = (size_t)(end - p);
    if (n >= outlen)
        n = outlen - 1;
    memcpy(out, p, n);
    out[n] = '\0';
}

int text_split_list(const char *list, char *items, size_t itemlen, int max)
{
    const char *p = list;
    int count = 0;

    while (*p) {
        size_t n = strcspn(p, ",");
        const char *s = p;
        const char *e = p + n;

        while (s < e && isspace((unsigned char)*s))
            s++;
        while (e > s && isspace((unsigned char)e[-1]))
            e--;
        if (e > s) {
            if (count == max || (size_t)(e - s) >= itemlen)
                return LJ_ETOOBIG;
            memcpy(items + (size_t)count * itemlen, s, (size_t)(e - s));
            items[(size_t)count * itemlen + (size_t)(e - s)] = '\0';
            count++;
        }
        p += n + (p[n] == ',');
    }
    return count;
}
