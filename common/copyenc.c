#include "copyenc.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "err.h"

int copyenc_text(lj_buf *out, const char *s, size_t n)
{
    size_t i;
    size_t run = 0;     /* start of the pending run of plain bytes */

    if (lj_buf_reserve(out, n) != 0)
        return LJ_ENOMEM;
    for (i = 0; i < n; i++) {
        const char *esc;

        switch (s[i]) {
        case '\\': esc = "\\\\"; break;
        case '\t': esc = "\\t"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        default: continue;
        }
        if (lj_buf_append(out, s + run, i - run) != 0 || lj_buf_append(out, esc, 2) != 0)
            return LJ_ENOMEM;
        run = i + 1;
    }
    return lj_buf_append(out, s + run, n - run);
}

/* 'v' == n / 10^k with |n| < 10^12, k <= 3: n's digits with k of them
 * after the point, trailing zeros dropped; the length, or 0 when 'v' is
 * not such a decimal. The double nearest a decimal of 15 significant
 * digits or fewer prints back as that decimal under "%.15g". */
static size_t short_decimal(double v, char *out)
{
    static const double scale[] = {1, 10, 100, 1000};
    char digits[24];
    size_t len = 0;
    unsigned long long u;
    int nd = 0;
    int k;

    if (!(v > -1e9 && v < 1e9) || v == 0)
        return 0;
    for (k = 0; k < 4; k++) {
        long long n = llround(v * scale[k]);

        if ((double)n / scale[k] != v)
            continue;
        if (n < 0)
            out[len++] = '-';
        for (u = (unsigned long long)(n < 0 ? -n : n); u > 0 || nd <= k; u /= 10)
            digits[nd++] = (char)('0' + u % 10);    /* least significant first */
        while (k > 0 && digits[0] == '0') {         /* trailing zeros of the fraction */
            memmove(digits, digits + 1, (size_t)--nd);
            k--;
        }
        while (nd > 0) {
            if (nd == k)
                out[len++] = '.';
            out[len++] = digits[--nd];
        }
        out[len] = '\0';
        return len;
    }
    return 0;
}

size_t copyenc_double(double v, char out[COPYENC_DOUBLE_MAX])
{
    size_t len = short_decimal(v, out);
    int n;

    if (len > 0)
        return len;
    n = snprintf(out, COPYENC_DOUBLE_MAX, "%.15g", v);
    return n > 0 ? (size_t)n : 0;
}

static int put_str(lj_buf *out, const char *s)
{
    if (s == NULL || *s == '\0')
        return lj_buf_append(out, "\\N\t", 3);
    if (copyenc_text(out, s, strlen(s)) != 0)
        return LJ_ENOMEM;
    return lj_buf_append(out, "\t", 1);
}

static int put_id(lj_buf *out, int64_t id)
{
    if (id <= 0)
        return lj_buf_append(out, "\\N\t", 3);
    return lj_buf_int(out, id) || lj_buf_append(out, "\t", 1) ? LJ_ENOMEM : 0;
}

static int put_field(lj_buf *out, const rec_health *r, rec_field f)
{
    if (!(r->present & (1u << f)))
        return lj_buf_append(out, "\\N\t", 3);
    if (rec_field_is_int(f))
        return lj_buf_int(out, (long long)r->num[f]) || lj_buf_append(out, "\t", 1) ? LJ_ENOMEM
                                                                                    : 0;
    char text[COPYENC_DOUBLE_MAX];
    size_t len = copyenc_double(r->num[f], text);

    text[len] = '\t';
    return lj_buf_append(out, text, len + 1);
}

int copyenc_health_row(lj_buf *out, const rec_health *r, const copyenc_owner *owner,
                       const copyenc_meta *meta)
{
    static const copyenc_owner nobody = {0, 0, 0};
    char ts[40];
    int f;

    if (owner == NULL)
        owner = &nobody;
    rec_format_ts_us(r->ts_ms, r->ts_us, ts, sizeof(ts));
    if (put_str(out, r->device_sn) != 0 || put_str(out, ts) != 0 ||
        put_id(out, owner->user_id) != 0 || put_id(out, owner->customer_id) != 0 ||
        put_id(out, owner->org_id) != 0)
        return LJ_ENOMEM;
    for (f = 0; f < REC_NUM_FIELDS; f++)
        if (put_field(out, r, (rec_field)f) != 0)
            return LJ_ENOMEM;
    if (put_str(out, r->sleep) != 0 || put_str(out, r->source_method) != 0 ||
        put_str(out, meta->upload_method) != 0 || put_str(out, meta->stream_id) != 0 ||
        put_str(out, meta->batch_id) != 0)
        return LJ_ENOMEM;
    out->data[out->len - 1] = '\n';    /* the last TAB ends the row */
    return 0;
}
