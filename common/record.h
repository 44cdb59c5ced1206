/* record.h -- the health record model and its validation (SPEC §2.1).
 *
 * An upload body is untrusted bytes. rec_parse_body() checks it (size of
 * nesting, UTF-8, no NUL), parses it with cJSON, accepts the body shapes
 *
 *     {"data": RECORD}   {"data": [RECORD, ...], "batchId": "..."}
 *     RECORD             [RECORD, ...]
 *     {"devices": [RECORD, ...]}    (the old service's oldest batch shape;
 *                                    rec_batch.devices says it was used)
 *
 * "devices" is that shape only when it is a list and the object has no
 * serial key (deviceSn, id, device_sn): otherwise the object is a bare
 * record and "devices" one of its unknown keys, ignored (SPEC §2.1). An
 * object with both "data" and a "devices" list is refused (LJ_EPARSE).
 * and validates each record on its own: a bad record is rejected with its
 * index and reason, the others are kept. Valid records are normalised into
 * rec_health (one spelling, typed values, a reading time in ms).
 *
 * The normalised form travels through the stream as compact JSON
 * (rec_batch_to_json), with the stored column names as keys:
 *
 *     [{"device_sn":"A1","ts":1700000000000,"heart_rate":80,...,
 *       "source_method":"wifi"}, ...]
 *
 * and the consumer reads it back with rec_batch_from_json(), which trusts the
 * producer's validation but still fails cleanly (LJ_EPARSE) on anything that
 * is not that form.
 *
 * Pure functions, no I/O, no globals: safe from any thread.
 */
#ifndef LJ_COMMON_RECORD_H
#define LJ_COMMON_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define REC_SN_MAX 64        /* device_sn bytes */
#define REC_SOURCE_MAX 20    /* source_method bytes */
#define REC_BATCH_ID_MAX 64  /* batchId bytes */
#define REC_REASON_MAX 96    /* one rejection reason */

/* Numeric fields, in column order. */
typedef enum rec_field {
    REC_HEART_RATE = 0,
    REC_BLOOD_OXYGEN,
    REC_TEMPERATURE,
    REC_PRESSURE_HIGH,
    REC_PRESSURE_LOW,
    REC_STRESS,
    REC_STEP,
    REC_DISTANCE,
    REC_CALORIE,
    REC_LATITUDE,
    REC_LONGITUDE,
    REC_ALTITUDE,
    REC_NUM_FIELDS
} rec_field;

/* Stored column name of 'f' ("heart_rate", ...); static string. */
const char *rec_field_column(rec_field f);
/* Nonzero when 'f' holds an integer (printed without a fraction). */
int rec_field_is_int(rec_field f);

typedef struct rec_health {
    char device_sn[REC_SN_MAX + 1];
    int64_t ts_ms;                  /* reading time, ms since the epoch, UTC */
    uint16_t ts_us;                 /* and microseconds past it (0..999) */
    uint8_t ts_server;              /* no timestamp was sent: the receive time */
    uint32_t present;               /* bit (1u << f) set when num[f] holds a value */
    double num[REC_NUM_FIELDS];     /* integers are held exactly (|v| < 2^31) */
    char *sleep;                    /* owned UTF-8 text, or NULL when absent */
    char source_method[REC_SOURCE_MAX + 1];
} rec_health;

typedef struct rec_error {
    int index;                      /* position of the record in the upload */
    char reason[REC_REASON_MAX];    /* e.g. "heart_rate out of range 0..300" */
} rec_error;

/* The records of one upload. Owns 'recs' (and each record's 'sleep') and
 * 'errs'. */
typedef struct rec_batch {
    rec_health *recs;
    size_t n;
    size_t cap;
    rec_error *errs;
    size_t nerr;
    size_t errcap;
    size_t total;                           /* records in the body, valid or not */
    char batch_id[REC_BATCH_ID_MAX + 1];    /* "batchId" of the body, or "" */
    int devices;                            /* the body was {"devices": [...]} */
} rec_batch;

typedef struct rec_opts {
    size_t max_records;     /* more records than this: LJ_ETOOBIG */
    int max_depth;          /* deeper JSON nesting than this: LJ_EDEPTH */
    int tz_offset_min;      /* offset from UTC of "YYYY-MM-DD HH:MM:SS" timestamps */
    int64_t now_ms;         /* receive time: the reading time when none is given */
} rec_opts;

void rec_batch_init(rec_batch *b);
void rec_batch_cleanup(rec_batch *b);

/* Scans 'len' bytes of 'body' without parsing: JSON nesting deeper than
 * 'max_depth' ([ and { outside strings) -> LJ_EDEPTH; invalid UTF-8 anywhere,
 * or a \u0000 escape inside a string (cJSON would silently cut the string
 * there) -> LJ_EPARSE. Returns 0 when the bytes may be handed to cJSON. */
int rec_prescan(const char *body, size_t len, int max_depth);

/* Parses and validates an upload body into 'out' (initialised by the
 * caller). Returns:
 *   0           records parsed; out->n may be 0 when every record was
 *               rejected (the caller answers 400 with out->errs)
 *   LJ_EPARSE   not JSON, trailing garbage, or not one of the body shapes
 *   LJ_EDEPTH   nesting deeper than opts->max_depth
 *   LJ_ETOOBIG  more than opts->max_records records
 *   LJ_ENOREC   an empty record list
 *   LJ_ENOMEM
 * On any error 'msg' (static string) says what is wrong, for the client, and
 * 'out' holds no records. 'body' need not be NUL-terminated. */
int rec_parse_body(const char *body, size_t len, const rec_opts *opts, rec_batch *out,
                   const char **msg);

/* Moves every record i of 'b' with mark[i] != 0 to the errors, with
 * 'reason' and its position in the upload; errors stay in upload order.
 * 0, or LJ_ENOMEM ('b' unchanged). */
int rec_batch_reject(rec_batch *b, const unsigned char *mark, const char *reason);

/* Appends the normalised records of 'b' to 'out' as one compact JSON array. */
int rec_batch_to_json(const rec_batch *b, lj_buf *out);

/* Reads a JSON array written by rec_batch_to_json() into 'out' (initialised
 * by the caller, records appended). LJ_EPARSE when it is not that form. */
int rec_batch_from_json(const char *json, size_t len, rec_batch *out);

/* Building blocks shared with report.c (device info and events). */
struct cJSON;

/* rec_prescan(), then a cJSON parse that refuses trailing bytes. On 0
 * '*root' is the tree, to be released with rec_json_free(); else LJ_EPARSE,
 * LJ_EDEPTH or LJ_ENOMEM with a client message in 'msg'.
 * The tree lives in a per-thread arena (one allocation pass instead of a
 * malloc per value, freed at once), so: release it with rec_json_free(),
 * never cJSON_Delete(), and print parts of it with rec_json_print(). */
int rec_json_parse(const char *body, size_t len, int max_depth, struct cJSON **root,
                   const char **msg);

/* Releases a tree from rec_json_parse() (NULL: no-op). */
void rec_json_free(struct cJSON *root);

/* 'v' (part of a tree from rec_json_parse) as compact JSON text in a
 * malloc'd string the caller frees; NULL when out of memory. */
char *rec_json_print(const struct cJSON *v);

/* The reading time of 'obj' (its "timestamp", or opts->now_ms): 0, or
 * LJ_EINVAL with a reason in 'reason' (REC_REASON_MAX bytes). */
int rec_read_ts(const struct cJSON *obj, const rec_opts *opts, int64_t *ts_ms, char *reason);

/* Nonzero when 's' is 1..'max' bytes of printable ASCII without spaces. */
int rec_is_token(const char *s, size_t max);

/* Formats 'ts_ms' as "YYYY-MM-DD HH:MM:SS.mmm+00" into 'out' (>= 32 bytes). */
void rec_format_ts(int64_t ts_ms, char *out, size_t outlen);
/* The same with 'us' microseconds past it: "...SS.mmmuuu+00" (>= 40 bytes);
 * as rec_format_ts() when 'us' is 0. */
void rec_format_ts_us(int64_t ts_ms, unsigned us, char *out, size_t outlen);

/* Records that came without a timestamp all read the receive time; the
 * key (device_sn, ts) would make all but one of them duplicates. So each
 * gets an instant of its own: 'first_us' (microseconds since the epoch),
 * the next one 1 us later, and so on, in upload order. Returns how many
 * records that was (call with 'first_us' 0 to count only). */
size_t rec_batch_stamp(rec_batch *b, int64_t first_us);

#endif
