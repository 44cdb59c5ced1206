/* copyenc.h -- PostgreSQL COPY binary-format encoding of health rows.
 *
 * A COPY stream is copyenc_begin(), one copyenc_health_row() per row, then
 * copyenc_end(), sent as "COPY t (" COPYENC_HEALTH_COLUMNS ") FROM STDIN"
 * COPYENC_OPTIONS. Each field is its column type's binary form, as
 * PostgreSQL's receive functions read it: varchar and text their UTF-8
 * bytes (no escaping: the caller has already checked that text is valid
 * UTF-8 without NUL), timestamptz microseconds since 2000-01-01 UTC,
 * bigint and integer, double precision IEEE 754, all big-endian; NULL is a
 * length of -1. The server parses no text, about a tenth of its time in a
 * text-format COPY (docs/benchmarks.md).
 *
 * A double is stored as the text format stored it: rounded to 15
 * significant digits (copyenc_stored_double), so both formats, and the
 * alert rules matched on it (alertrule.h), see one value. Pure functions.
 */
#ifndef LJ_COMMON_COPYENC_H
#define LJ_COMMON_COPYENC_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "record.h"

/* The double PostgreSQL stores for 'v' when it reads "%.15g" of 'v' as
 * text: 'v' itself for a decimal of at most 6 fractional digits (every
 * reading), else that round trip. */
double copyenc_stored_double(double v);

#define COPYENC_OPTIONS " (FORMAT binary)"

/* The columns of copyenc_health_row(), in its order. */
#define COPYENC_HEALTH_COLUMNS                                                        \
    "device_sn, ts, user_id, customer_id, org_id, heart_rate, blood_oxygen, "        \
    "temperature, pressure_high, pressure_low, stress, step, distance, calorie, "    \
    "latitude, longitude, altitude, sleep, source_method, upload_method, stream_id, " \
    "batch_id, stream_shard"

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
    int shard;                  /* the entry's stream shard; < 0 (not a stream row): NULL */
    const char *batch_id;
} copyenc_meta;

/* The stream's header and trailer. 0 or LJ_ENOMEM. */
int copyenc_begin(lj_buf *out);
int copyenc_end(lj_buf *out);

/* Appends one row for 'r'. 'owner' may be NULL (all ids NULL).
 * Returns 0 or LJ_ENOMEM. */
int copyenc_health_row(lj_buf *out, const rec_health *r, const copyenc_owner *owner,
                       const copyenc_meta *meta);

#endif
