#include "copyenc.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

#define COLUMNS 23                          /* of COPYENC_HEALTH_COLUMNS */
#define EPOCH_2000_MS 946684800000LL        /* PostgreSQL's timestamp epoch */

/* "PGCOPY\n\377\r\n\0", no flags, no header extension. */
static const char header[19] = "PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0\0";

/* 'v' == n / 10^k exactly as doubles go, for some k <= 6 and |n| < 10^15:
 * the double nearest a decimal of at most 15 significant digits, which
 * "%.15g" prints back as that decimal and strtod() reads back as 'v'. */
static int short_decimal(double v)
{
    static const double scale[] = {1, 10, 100, 1000, 1e4, 1e5, 1e6};
    size_t k;

    if (!(v > -1e9 && v < 1e9) || v == 0)
        return 0;
    for (k = 0; k < sizeof(scale) / sizeof(scale[0]); k++) {
        double x = v * scale[k];

        if (fabs(x) >= 1e15)
            return 0;
        if ((double)llround(x) / scale[k] == v)
            return 1;
    }
    return 0;
}

double copyenc_stored_double(double v)
{
    char text[40];

    if (short_decimal(v))
        return v;
    snprintf(text, sizeof(text), "%.15g", v);
    return strtod(text, NULL);
}

static void put_be(char *p, uint64_t v, int bytes)
{
    int i;

    for (i = bytes - 1; i >= 0; i--, v >>= 8)
        p[i] = (char)(v & 0xff);
}

/* One field: its length, then 'bytes' of 'v' big-endian. */
static void put_int(lj_buf *out, uint64_t v, int bytes)
{
    put_be(out->data + out->len, (uint64_t)bytes, 4);
    put_be(out->data + out->len + 4, v, bytes);
    out->len += 4 + (size_t)bytes;
}

static void put_null(lj_buf *out)
{
    put_be(out->data + out->len, 0xffffffffu, 4);
    out->len += 4;
}

static void put_id(lj_buf *out, int64_t id)
{
    if (id <= 0)
        put_null(out);
    else
        put_int(out, (uint64_t)id, 8);
}

/* An integer column is int4: a value outside it (the producer refuses
 * those; a hand-made entry may not) goes as 8 bytes, which the server
 * refuses as data (SQLSTATE 22P03), as it refused the text form. */
static void put_field(lj_buf *out, const rec_health *r, rec_field f)
{
    double v = r->num[f];
    uint64_t bits;

    if (!(r->present & (1u << f))) {
        put_null(out);
    } else if (rec_field_is_int(f)) {
        if (v >= -2147483648.0 && v <= 2147483647.0)
            put_int(out, (uint32_t)(int64_t)v, 4);
        else
            put_int(out, 0, 8);
    } else {
        v = copyenc_stored_double(v);
        memcpy(&bits, &v, sizeof(bits));
        put_int(out, bits, 8);
    }
}

/* A text field ('s' NULL or "": NULL). 0 or LJ_ENOMEM. */
static int put_str(lj_buf *out, const char *s)
{
    size_t n = s ? strlen(s) : 0;

    if (n == 0) {
        if (lj_buf_reserve(out, 4) != 0)
            return LJ_ENOMEM;
        put_null(out);
        return 0;
    }
    if (lj_buf_reserve(out, 4 + n) != 0)
        return LJ_ENOMEM;
    put_be(out->data + out->len, (uint64_t)n, 4);
    memcpy(out->data + out->len + 4, s, n);
    out->len += 4 + n;
    return 0;
}

int copyenc_begin(lj_buf *out)
{
    return lj_buf_append(out, header, sizeof(header));
}

int copyenc_end(lj_buf *out)
{
    return lj_buf_append(out, "\xff\xff", 2);
}

int copyenc_health_row(lj_buf *out, const rec_health *r, const copyenc_owner *owner,
                       const copyenc_meta *meta)
{
    static const copyenc_owner nobody = {0, 0, 0};
    /* ts, the three ids and the numbers, each at its widest. */
    const size_t fixed = 12 + 3 * 12 + REC_NUM_FIELDS * 12;
    /* the shard (smallint) and the trailing NUL */
    const size_t tail = 6 + 1;
    int64_t us = (r->ts_ms - EPOCH_2000_MS) * 1000 + r->ts_us % 1000;
    int f;

    if (owner == NULL)
        owner = &nobody;
    if (lj_buf_reserve(out, 2) != 0)
        return LJ_ENOMEM;
    put_be(out->data + out->len, COLUMNS, 2);
    out->len += 2;
    if (put_str(out, r->device_sn) != 0 || lj_buf_reserve(out, fixed) != 0)
        return LJ_ENOMEM;
    put_int(out, (uint64_t)us, 8);
    put_id(out, owner->user_id);
    put_id(out, owner->customer_id);
    put_id(out, owner->org_id);
    for (f = 0; f < REC_NUM_FIELDS; f++)
        put_field(out, r, (rec_field)f);
    if (put_str(out, r->sleep) != 0 || put_str(out, r->source_method) != 0 ||
        put_str(out, meta->upload_method) != 0 || put_str(out, meta->stream_id) != 0 ||
        put_str(out, meta->batch_id) != 0 || lj_buf_reserve(out, tail) != 0)
        return LJ_ENOMEM;
    if (meta->shard < 0)
        put_null(out);
    else
        put_int(out, (uint16_t)meta->shard, 2);
    out->data[out->len] = '\0';
    return 0;
}
