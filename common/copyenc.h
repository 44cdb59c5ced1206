/* copyenc.h -- PostgreSQL COPY text-format encoding of health rows.
 *
 * One row is the columns of COPYENC_HEALTH_COLUMNS separated by TAB and
 * ended by LF; NULL is \N. Text is escaped as COPY's text format requires:
 *
 *     backslash -> \\    TAB -> \t    LF -> \n    CR -> \r
 *
 * Everything else (quotes, UTF-8) passes through unchanged: the caller has
 * already checked that text is valid UTF-8 without NUL. Pure functions.
 */
#ifndef LJ_COMMON_COPYENC_H
#define LJ_COMMON_COPYENC_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "record.h"

/* Writes 'v' as printf's "%.15g" does (the digits a double column keeps),
 * NUL-terminated, into 'out'; returns its length. Decimals of at most
 * three fractional digits (readings) skip printf. */
#define COPYENC_DOUBLE_MAX 32
size_t copyenc_double(double v, char out[COPYENC_DOUBLE_MAX]);

/* Column list matching copyenc_health_row(), for "COPY t (...) FROM STDIN". */
#define COPYENC_HEALTH_COLUMNS                                                        \
    "device_sn, ts, user_id, customer_id, org_id, heart_rate, blood_oxygen, "        \
    "temperature, pressure_high, pressure_low, stress, step, distance, calorie, "    \
    "latitude, longitude, altitude, sleep, source_method, upload_method, stream_id, " \
    "batch_id"

/* Who the device belongs to; an id <= 0 is unknown and written as NULL. */
typedef struct copyenc_owner {
    int64_t user_id;
    int64_t customer_id;
    int64_t org_id;
} copyenc_owner;

/* Where a row came from. NULL or "" strings are written as NULL. */
typedef struct copyenc_meta {
    const char *upload_method;  /* "stream_v2", "optimized" or "import" */
    const char *stream_id;
    const char *batch_id;
} copyenc_meta;

/* Appends 'n' bytes of 's' escaped for COPY text format. */
int copyenc_text(lj_buf *out, const char *s, size_t n);

/* Appends one row for 'r'. 'owner' may be NULL (all ids NULL).
 * Returns 0 or LJ_ENOMEM. */
int copyenc_health_row(lj_buf *out, const rec_health *r, const copyenc_owner *owner,
                       const copyenc_meta *meta);

#endif
