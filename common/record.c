/* record.c -- the health record model and its validation (SPEC §2.1).
 *
 * Layout: the field table, calendar arithmetic, the pre-scan, value
 * readers, record and body validation, the cJSON parse arena, and the
 * normalised payload (to/from JSON). See record.h for the contract.
 */
#include "record.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "err.h"

/* ------------------------------------------------------------------------
 * The field table
 * ------------------------------------------------------------------------ */

/* Every key a record may carry. A record's members are matched against
 * this list once (index_record), so each field is then found by its id
 * instead of a string search through the object per spelling. */
#define REC_KEYS(XX)                                                              \
    XX(DEVICESN, "deviceSn") XX(ID, "id") XX(DEVICE_SN, "device_sn")              \
    XX(HEART_RATE, "heart_rate") XX(HEARTRATE, "heartRate")                       \
    XX(BLOOD_OXYGEN, "blood_oxygen") XX(BLOODOXYGEN, "bloodOxygen")               \
    XX(BODY_TEMPERATURE, "body_temperature") XX(TEMPERATURE, "temperature")       \
    XX(SYSTOLIC, "blood_pressure_systolic") XX(PRESSUREHIGH, "pressureHigh")      \
    XX(DIASTOLIC, "blood_pressure_diastolic") XX(PRESSURELOW, "pressureLow")      \
    XX(STRESS, "stress") XX(STEP, "step") XX(DISTANCE, "distance")                \
    XX(CALORIE, "calorie") XX(LATITUDE, "latitude") XX(LONGITUDE, "longitude")    \
    XX(ALTITUDE, "altitude") XX(SLEEPDATA, "sleepData") XX(SLEEP, "sleep")        \
    XX(TIMESTAMP, "timestamp") XX(UPLOADMETHOD, "uploadMethod")

enum key_id {
    K_NONE = -1,
#define XX(id, name) K_##id,
    REC_KEYS(XX)
#undef XX
    K_COUNT
};

static const char *const key_names[K_COUNT] = {
#define XX(id, name) name,
    REC_KEYS(XX)
#undef XX
};

/* A record's members by key id (first occurrence; NULL when absent). */
typedef struct rec_index {
    const cJSON *v[K_COUNT];
} rec_index;

typedef struct field_spec {
    const char *column;
    int keys[2];            /* accepted spellings (key ids), first wins */
    int is_int;
    double min;
    double max;
    const char *range;      /* for the rejection reason */
} field_spec;

#define INT_MAX_D 2147483647.0

static const field_spec fields[REC_NUM_FIELDS] = {
    [REC_HEART_RATE] = {"heart_rate", {K_HEART_RATE, K_HEARTRATE}, 1, 0, 300, "0..300"},
    [REC_BLOOD_OXYGEN] = {"blood_oxygen", {K_BLOOD_OXYGEN, K_BLOODOXYGEN}, 1, 0, 100,
                          "0..100"},
    [REC_TEMPERATURE] = {"temperature", {K_BODY_TEMPERATURE, K_TEMPERATURE}, 0, 25.0, 45.0,
                         "25.0..45.0"},
    [REC_PRESSURE_HIGH] = {"pressure_high", {K_SYSTOLIC, K_PRESSUREHIGH}, 1, 0, 300, "0..300"},
    [REC_PRESSURE_LOW] = {"pressure_low", {K_DIASTOLIC, K_PRESSURELOW}, 1, 0, 300, "0..300"},
    [REC_STRESS] = {"stress", {K_STRESS, K_NONE}, 1, 0, 100, "0..100"},
    [REC_STEP] = {"step", {K_STEP, K_NONE}, 1, 0, INT_MAX_D, "0..2147483647"},
    [REC_DISTANCE] = {"distance", {K_DISTANCE, K_NONE}, 1, 0, INT_MAX_D, "0..2147483647"},
    [REC_CALORIE] = {"calorie", {K_CALORIE, K_NONE}, 1, 0, INT_MAX_D, "0..2147483647"},
    [REC_LATITUDE] = {"latitude", {K_LATITUDE, K_NONE}, 0, -90, 90, "-90..90"},
    [REC_LONGITUDE] = {"longitude", {K_LONGITUDE, K_NONE}, 0, -180, 180, "-180..180"},
    [REC_ALTITUDE] = {"altitude", {K_ALTITUDE, K_NONE}, 0, -100000, 100000,
                      "-100000..100000"},
};

static const int sn_keys[] = {K_DEVICESN, K_ID, K_DEVICE_SN};
static const int sleep_keys[] = {K_SLEEPDATA, K_SLEEP};

/* Reading times outside [2000-01-01, 2100-01-01) UTC are refused. */
#define TS_MIN_MS 946684800000LL
#define TS_MAX_MS 4102444800000LL
/* Epoch values at or above this are milliseconds, below it seconds. */
#define EPOCH_MS_THRESHOLD 100000000000.0

const char *rec_field_column(rec_field f)
{
    return (unsigned)f < REC_NUM_FIELDS ? fields[f].column : "?";
}

int rec_field_is_int(rec_field f)
{
    return (unsigned)f < REC_NUM_FIELDS && fields[f].is_int;
}

/* ------------------------------------------------------------------------
 * Calendar arithmetic (proleptic Gregorian; no TZ, locale or timegm)
 * ------------------------------------------------------------------------ */

/* Days since 1970-01-01 of y-m-d (H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    int64_t era;
    unsigned yoe;
    unsigned doy;
    unsigned doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = (unsigned)(y - era * 400);
    doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

/* The inverse: y-m-d of 'z' days since 1970-01-01. */
static void civil_from_days(int64_t z, int *y, unsigned *m, unsigned *d)
{
    int64_t era;
    unsigned doe;
    unsigned yoe;
    unsigned doy;
    unsigned mp;

    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = (unsigned)(z - era * 146097);
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int)((int64_t)yoe + era * 400 + (*m <= 2));
}

static unsigned days_in_month(int y, unsigned m)
{
    static const unsigned days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

    return m == 2 && leap ? 29 : days[m - 1];
}

/* Writes 'v' as 'width' decimal digits, zero-padded; returns the end. */
static char *put_digits(char *p, unsigned v, int width)
{
    int i;

    for (i = width - 1; i >= 0; i--, v /= 10)
        p[i] = (char)('0' + v % 10);
    return p + width;
}

/* "YYYY-MM-DD hh:mm:ss.mmm[uuu]+00" (us < 1000: the microseconds too). */
static void put_clock(char *p, unsigned y, unsigned m, unsigned d, unsigned sod, unsigned ms,
                      unsigned us)
{
    p = put_digits(p, y, 4);
    *p++ = '-';
    p = put_digits(p, m, 2);
    *p++ = '-';
    p = put_digits(p, d, 2);
    *p++ = ' ';
    p = put_digits(p, sod / 3600, 2);
    *p++ = ':';
    p = put_digits(p, sod / 60 % 60, 2);
    *p++ = ':';
    p = put_digits(p, sod % 60, 2);
    *p++ = '.';
    p = put_digits(p, ms, 3);
    if (us < 1000)
        p = put_digits(p, us, 3);
    memcpy(p, "+00", 4);
}

/* 'us' 1000 or more: milliseconds only. */
static void format_ts(int64_t ts_ms, unsigned us, char *out, size_t outlen)
{
    /* Floor division, so times before 1970 still print a valid clock. */
    int64_t secs = ts_ms >= 0 ? ts_ms / 1000 : -((-(ts_ms + 1)) / 1000) - 1;
    int ms = (int)(ts_ms - secs * 1000);
    int64_t days = secs >= 0 ? secs / 86400 : -((-(secs + 1)) / 86400) - 1;
    int64_t sod = secs - days * 86400;
    int y;
    unsigned m;
    unsigned d;

    civil_from_days(days, &y, &m, &d);
    if (y >= 0 && y <= 9999 && outlen >= 34) {    /* printf's result, without printf */
        put_clock(out, (unsigned)y, m, d, (unsigned)sod, (unsigned)ms, us);
        return;
    }
    if (us < 1000)
        snprintf(out, outlen, "%04d-%02u-%02u %02d:%02d:%02d.%03d%03u+00", y, m, d,
                 (int)(sod / 3600), (int)(sod / 60 % 60), (int)(sod % 60), ms, us);
    else
        snprintf(out, outlen, "%04d-%02u-%02u %02d:%02d:%02d.%03d+00", y, m, d,
                 (int)(sod / 3600), (int)(sod / 60 % 60), (int)(sod % 60), ms);
}

void rec_format_ts(int64_t ts_ms, char *out, size_t outlen)
{
    format_ts(ts_ms, 1000, out, outlen);
}

void rec_format_ts_us(int64_t ts_ms, unsigned us, char *out, size_t outlen)
{
    format_ts(ts_ms, us == 0 ? 1000 : us % 1000, out, outlen);
}

size_t rec_batch_stamp(rec_batch *b, int64_t first_us)
{
    size_t i;
    size_t k = 0;

    for (i = 0; i < b->n; i++) {
        rec_health *r = &b->recs[i];

        if (!r->ts_server)
            continue;
        if (first_us > 0) {
            int64_t t = first_us + (int64_t)k;

            r->ts_ms = t / 1000;
            r->ts_us = (uint16_t)(t % 1000);
        }
        k++;
    }
    return k;
}

/* ------------------------------------------------------------------------
 * Pre-scan: depth, UTF-8, NUL (before cJSON sees the bytes)
 * ------------------------------------------------------------------------ */

/* Length of the valid UTF-8 sequence at 'p' (at most 'n' bytes), 0 if invalid. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
    unsigned c = p[0];
    size_t len;
    unsigned cp;
    size_t i;

    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;   /* a continuation byte, C0/C1 (always overlong) or F5..FF */
    }
    if (n < len)
        return 0;
    for (i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;   /* overlong, out of range, or a UTF-16 surrogate */
    return len;
}

int rec_prescan(const char *body, size_t len, int max_depth)
{
    const unsigned char *p = (const unsigned char *)body;
    int depth = 0;
    int in_string = 0;
    int escaped = 0;
    size_t i = 0;

    while (i < len) {
        unsigned char c = p[i];
        size_t n;

        if (c == 0)
            return LJ_EPARSE;
        if (c >= 0x80) {
            if ((n = utf8_len(p + i, len - i)) == 0)
                return LJ_EPARSE;
            i += n;
            escaped = 0;
            continue;
        }
        if (escaped) {
            /* cJSON would end the string at a decoded NUL and drop the rest. */
            if (c == 'u' && len - i > 4 && memcmp(body + i + 1, "0000", 4) == 0)
                return LJ_EPARSE;
            escaped = 0;
        } else if (in_string) {
            if (c == '\\')
                escaped = 1;
            else if (c == '"')
                in_string = 0;
        } else if (c == '"') {
            in_string = 1;
        } else if (c == '[' || c == '{') {
            if (++depth > max_depth)
                return LJ_EDEPTH;
        } else if (c == ']' || c == '}') {
            if (--depth < 0)
                return LJ_EPARSE;   /* closes what was never opened */
        }
        i++;
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Values
 * ------------------------------------------------------------------------ */

static int key_id(const char *name)
{
    int k;

    for (k = 0; k < K_COUNT; k++)
        if (key_names[k][0] == name[0] && strcmp(key_names[k], name) == 0)
            return k;
    return K_NONE;
}

/* One pass over the members of 'obj'; unknown keys are ignored, and a
 * repeated key keeps its first value (as cJSON's own lookup does). */
static void index_record(const cJSON *obj, rec_index *ix)
{
    const cJSON *m;

    memset(ix, 0, sizeof(*ix));
    for (m = obj->child; m; m = m->next) {
        int k = m->string ? key_id(m->string) : K_NONE;

        if (k != K_NONE && ix->v[k] == NULL)
            ix->v[k] = m;
    }
}

/* The first present, non-null member among 'keys' (JSON null = absent). */
static const cJSON *find_key(const rec_index *ix, const int *keys, size_t nkeys)
{
    size_t i;

    for (i = 0; i < nkeys && keys[i] != K_NONE; i++) {
        const cJSON *v = ix->v[keys[i]];

        if (v && !cJSON_IsNull(v))
            return v;
    }
    return NULL;
}

/* A strict decimal number: what strtod accepts minus spaces, hex, inf and
 * nan (the character set excludes them), and minus overflow. */
static int parse_numeric_string(const char *s, double *out)
{
    const char *p;
    char *end;
    double v;

    if (*s == '\0')
        return -1;
    for (p = s; *p; p++)
        if (!((*p >= '0' && *p <= '9') || *p == '.' || *p == '-' || *p == '+' || *p == 'e' ||
              *p == 'E'))
            return -1;
    errno = 0;
    v = strtod(s, &end);
    if (*end != '\0' || end == s || errno == ERANGE || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

/* A JSON number or numeric string as a finite double. 0, or -1. Never
 * valueint: it saturates silently. */
static int number_of(const cJSON *v, double *out)
{
    if (cJSON_IsNumber(v)) {
        if (!isfinite(v->valuedouble))
            return -1;      /* cJSON reads 1e400 as inf */
        *out = v->valuedouble;
        return 0;
    }
    if (cJSON_IsString(v) && v->valuestring)
        return parse_numeric_string(v->valuestring, out);
    return -1;
}

/* Nonzero when 's' is 'min'..'max' bytes of printable ASCII (0x21..0x7E,
 * plus the space when 'space_ok'). */
static int is_printable(const char *s, size_t min, size_t max, int space_ok)
{
    unsigned char lo = space_ok ? 0x20 : 0x21;
    size_t n;

    for (n = 0; s[n]; n++)
        if ((unsigned char)s[n] < lo || (unsigned char)s[n] > 0x7E || n == max)
            return 0;
    return n >= min;
}

int rec_is_token(const char *s, size_t max)
{
    return is_printable(s, 1, max, 0);
}

static int reject(char *reason, const char *text)
{
    snprintf(reason, REC_REASON_MAX, "%s", text);
    return LJ_EINVAL;
}

static int reject_field(char *reason, const char *column, const char *what)
{
    snprintf(reason, REC_REASON_MAX, "%s %s", column, what);
    return LJ_EINVAL;
}

/* ------------------------------------------------------------------------
 * One record
 * ------------------------------------------------------------------------ */

static int parse_field(const rec_index *ix, rec_field f, rec_health *out, char *reason)
{
    const field_spec *fs = &fields[f];
    const cJSON *v = find_key(ix, fs->keys, 2);
    char what[48];
    double d;

    if (v == NULL)
        return 0;
    if (number_of(v, &d) != 0)
        return reject_field(reason, fs->column, "must be a number");
    if (fs->is_int && d != floor(d))
        return reject_field(reason, fs->column, "must be an integer");
    if (d < fs->min || d > fs->max) {
        snprintf(what, sizeof(what), "out of range %s", fs->range);
        return reject_field(reason, fs->column, what);
    }
    out->num[f] = d;
    out->present |= 1u << f;
    return 0;
}

static int parse_device(const rec_index *ix, rec_health *out, char *reason)
{
    const cJSON *v = find_key(ix, sn_keys, 3);

    if (v == NULL)
        return reject(reason, "device_sn is required (deviceSn, id or device_sn)");
    if (!cJSON_IsString(v) || v->valuestring == NULL)
        return reject(reason, "device_sn must be a string");
    if (!rec_is_token(v->valuestring, REC_SN_MAX))
        return reject(reason, "device_sn must be 1..64 printable ASCII characters, no spaces");
    memcpy(out->device_sn, v->valuestring, strlen(v->valuestring) + 1);
    return 0;
}

/* Two decimal digits at 's' (already checked to be digits). */
static unsigned two_digits(const char *s)
{
    return (unsigned)(s[0] - '0') * 10 + (unsigned)(s[1] - '0');
}

/* "YYYY-MM-DD HH:MM:SS" at 'tz_offset_min' from UTC (local = UTC + offset),
 * to ms since the epoch. 0, or -1 when not exactly that form or no such
 * date or time. */
static int parse_datetime(const char *s, int tz_offset_min, int64_t *out)
{
    static const char shape[] = "dddd-dd-dd dd:dd:dd";
    int y;
    unsigned mo;
    unsigned d;
    unsigned h;
    unsigned mi;
    unsigned sec;
    size_t i;

    for (i = 0; shape[i]; i++)
        if (shape[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != shape[i])
            return -1;      /* also stops at a short string's NUL */
    if (s[i] != '\0')
        return -1;
    y = (int)(two_digits(s) * 100 + two_digits(s + 2));
    mo = two_digits(s + 5);
    d = two_digits(s + 8);
    h = two_digits(s + 11);
    mi = two_digits(s + 14);
    sec = two_digits(s + 17);
    if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 ||
        sec > 59)
        return -1;
    *out = (days_from_civil(y, mo, d) * 86400 + (int64_t)(h * 3600 + mi * 60 + sec) -
            (int64_t)tz_offset_min * 60) * 1000;
    return 0;
}

/* Epoch seconds (fractions allowed) or milliseconds, to ms. Values far
 * outside the accepted range are clamped just outside it, so the range
 * check refuses them without an overflowing conversion. */
static int64_t epoch_to_ms(double d)
{
    if (d >= EPOCH_MS_THRESHOLD)
        return d < 1e15 ? (int64_t)llround(d) : TS_MAX_MS;
    return d > -1e12 ? (int64_t)llround(d * 1000.0) : TS_MIN_MS - 1;
}

/* The reading time from the "timestamp" value 'v' (NULL: none given). */
static int read_ts_value(const cJSON *v, const rec_opts *o, int64_t *ts_ms, char *reason)
{
    int64_t ts;
    double d;

    if (v == NULL || cJSON_IsNull(v)) {
        *ts_ms = o->now_ms;
        return 0;
    }
    if (number_of(v, &d) == 0)
        ts = epoch_to_ms(d);
    else if (!cJSON_IsString(v) || v->valuestring == NULL ||
             parse_datetime(v->valuestring, o->tz_offset_min, &ts) != 0)
        return reject(reason, "timestamp must be epoch seconds, epoch milliseconds or "
                              "\"YYYY-MM-DD HH:MM:SS\"");
    if (ts < TS_MIN_MS || ts >= TS_MAX_MS)
        return reject(reason, "timestamp out of range 2000-01-01..2099-12-31");
    *ts_ms = ts;
    return 0;
}

int rec_read_ts(const cJSON *obj, const rec_opts *o, int64_t *ts_ms, char *reason)
{
    return read_ts_value(cJSON_GetObjectItemCaseSensitive(obj, "timestamp"), o, ts_ms, reason);
}

static int parse_source(const rec_index *ix, rec_health *out, char *reason)
{
    const cJSON *v = ix->v[K_UPLOADMETHOD];

    if (v == NULL || cJSON_IsNull(v)) {
        memcpy(out->source_method, "api", 4);
        return 0;
    }
    if (!cJSON_IsString(v) || v->valuestring == NULL ||
        !is_printable(v->valuestring, 1, REC_SOURCE_MAX, 1))
        return reject(reason, "uploadMethod must be 1..20 printable ASCII characters");
    memcpy(out->source_method, v->valuestring, strlen(v->valuestring) + 1);
    return 0;
}

/* A string is kept as its text, any other value as its compact JSON. */
static int parse_sleep(const rec_index *ix, rec_health *out)
{
    const cJSON *v = find_key(ix, sleep_keys, 2);

    if (v == NULL)
        return 0;
    if (cJSON_IsString(v) && v->valuestring)
        out->sleep = strdup(v->valuestring);
    else
        out->sleep = rec_json_print(v);
    return out->sleep ? 0 : LJ_ENOMEM;
}

/* Validates one record object into 'out'. 0; LJ_EINVAL with 'reason';
 * or LJ_ENOMEM. 'out->sleep' may be set (to free) whatever the result. */
static int parse_record(const cJSON *obj, const rec_opts *o, rec_health *out, char *reason)
{
    rec_index ix;
    int f;

    memset(out, 0, sizeof(*out));
    if (!cJSON_IsObject(obj))
        return reject(reason, "record must be a JSON object");
    index_record(obj, &ix);
    out->ts_server = ix.v[K_TIMESTAMP] == NULL || cJSON_IsNull(ix.v[K_TIMESTAMP]);
    if (parse_device(&ix, out, reason) != 0 ||
        read_ts_value(ix.v[K_TIMESTAMP], o, &out->ts_ms, reason) != 0 ||
        parse_source(&ix, out, reason) != 0)
        return LJ_EINVAL;
    for (f = 0; f < REC_NUM_FIELDS; f++)
        if (parse_field(&ix, (rec_field)f, out, reason) != 0)
            return LJ_EINVAL;
    return parse_sleep(&ix, out);
}

/* ------------------------------------------------------------------------
 * Batches
 * ------------------------------------------------------------------------ */

void rec_batch_init(rec_batch *b)
{
    memset(b, 0, sizeof(*b));
}

void rec_batch_cleanup(rec_batch *b)
{
    size_t i;

    for (i = 0; i < b->n; i++)
        free(b->recs[i].sleep);
    free(b->recs);
    free(b->errs);
    rec_batch_init(b);
}

/* Makes '*p' (an array of 'size'-byte items, '*cap' of them) hold 'need'. */
static int grow(void **p, size_t *cap, size_t need, size_t size)
{
    size_t ncap;
    void *np;

    if (need <= *cap)
        return 0;
    ncap = *cap ? *cap : 16;
    while (ncap < need)
        ncap *= 2;
    if (ncap > (size_t)-1 / size || (np = realloc(*p, ncap * size)) == NULL)
        return LJ_ENOMEM;
    *p = np;
    *cap = ncap;
    return 0;
}

static int add_error(rec_batch *b, int index, const char *reason)
{
    if (grow((void **)&b->errs, &b->errcap, b->nerr + 1, sizeof(*b->errs)) != 0)
        return LJ_ENOMEM;
    b->errs[b->nerr].index = index;
    snprintf(b->errs[b->nerr].reason, REC_REASON_MAX, "%s", reason);
    b->nerr++;
    return 0;
}

static int push_record(rec_batch *b, const rec_health *r)
{
    if (grow((void **)&b->recs, &b->cap, b->n + 1, sizeof(*b->recs)) != 0)
        return LJ_ENOMEM;
    b->recs[b->n++] = *r;
    return 0;
}

int rec_batch_reject(rec_batch *b, const unsigned char *mark, const char *reason)
{
    rec_error *errs;
    size_t nmarked = 0;
    size_t old = 0;     /* next entry of b->errs to merge */
    size_t kept = 0;
    size_t nerr = 0;
    size_t i;
    int index = 0;      /* position in the upload of recs[i] */

    for (i = 0; i < b->n; i++)
        nmarked += mark[i] != 0;
    if (nmarked == 0)
        return 0;
    if ((errs = malloc((b->nerr + nmarked) * sizeof(*errs))) == NULL)
        return LJ_ENOMEM;
    for (i = 0; i < b->n; i++, index++) {
        /* Invalid records fill the gaps between valid ones, in order. */
        while (old < b->nerr && b->errs[old].index <= index) {
            index = b->errs[old].index + 1;
            errs[nerr++] = b->errs[old++];
        }
        if (!mark[i]) {
            b->recs[kept++] = b->recs[i];
            continue;
        }
        free(b->recs[i].sleep);
        errs[nerr].index = index;
        snprintf(errs[nerr++].reason, REC_REASON_MAX, "%s", reason);
    }
    while (old < b->nerr)
        errs[nerr++] = b->errs[old++];
    free(b->errs);
    b->errs = errs;
    b->nerr = b->errcap = nerr;
    b->n = kept;
    return 0;
}

/* Validates record 'index' of the upload into 'b': a valid one joins
 * 'recs', a bad one 'errs'. 0, or LJ_ENOMEM. */
static int add_record(rec_batch *b, const cJSON *obj, int index, const rec_opts *o)
{
    char reason[REC_REASON_MAX];
    rec_health r;
    int rc = parse_record(obj, o, &r, reason);

    if (rc == LJ_EINVAL) {
        free(r.sleep);
        return add_error(b, index, reason);
    }
    if (rc != 0 || (rc = push_record(b, &r)) != 0)
        free(r.sleep);
    return rc;
}

/* Reads the optional "batchId" of 'root' into out->batch_id. */
static int read_batch_id(const cJSON *root, rec_batch *out, const char **msg)
{
    const cJSON *bid = cJSON_GetObjectItemCaseSensitive(root, "batchId");

    if (bid == NULL || cJSON_IsNull(bid))
        return 0;
    if (!cJSON_IsString(bid) || bid->valuestring == NULL ||
        !is_printable(bid->valuestring, 0, REC_BATCH_ID_MAX, 1)) {
        *msg = "batchId must be a string of at most 64 characters";
        return LJ_EPARSE;
    }
    memcpy(out->batch_id, bid->valuestring, strlen(bid->valuestring) + 1);
    return 0;
}

/* The list of a {"devices": [...]} body, or NULL. Only an array under an
 * object that is no record itself (no serial key) is that shape: a bare
 * record may carry any unknown key, "devices" too (SPEC §2.1: ignored). */
static const cJSON *batch_devices(const cJSON *root)
{
    const cJSON *devices = cJSON_GetObjectItemCaseSensitive(root, "devices");

    if (!cJSON_IsArray(devices) ||
        cJSON_GetObjectItemCaseSensitive(root, "deviceSn") ||
        cJSON_GetObjectItemCaseSensitive(root, "id") ||
        cJSON_GetObjectItemCaseSensitive(root, "device_sn"))
        return NULL;
    return devices;
}

/* Finds the records in 'root' (one of the body shapes) and the batchId of
 * a {"data": ...} or {"devices": [...]} body. '*list' is an array, or one
 * record. */
static int find_records(const cJSON *root, rec_batch *out, const cJSON **list, const char **msg)
{
    const cJSON *data;
    const cJSON *devices;

    if (cJSON_IsArray(root)) {
        *list = root;
        return 0;
    }
    if (!cJSON_IsObject(root))
        goto bad_shape;
    data = cJSON_GetObjectItemCaseSensitive(root, "data");
    devices = batch_devices(root);
    if (data && devices) {
        *msg = "body has both \"data\" and \"devices\": send one";
        return LJ_EPARSE;
    }
    if (devices) {
        out->devices = 1;
        *list = devices;
        return read_batch_id(root, out, msg);
    }
    if (data == NULL) {
        *list = root;   /* a bare record */
        return 0;
    }
    if (!cJSON_IsObject(data) && !cJSON_IsArray(data))
        goto bad_shape;
    *list = data;
    return read_batch_id(root, out, msg);
bad_shape:
    *msg = "body must be a record, a list of records, {\"data\": ...} or {\"devices\": [...]}";
    return LJ_EPARSE;
}

static int parse_records(const cJSON *list, const rec_opts *o, rec_batch *out, const char **msg)
{
    const cJSON *item;
    size_t count;
    int i = 0;

    if (!cJSON_IsArray(list)) {
        out->total = 1;
        return add_record(out, list, 0, o);
    }
    count = (size_t)cJSON_GetArraySize(list);
    if (count == 0) {
        *msg = "no records in upload";
        return LJ_ENOREC;
    }
    if (count > o->max_records) {
        *msg = "too many records in one upload";  /* before any validation work */
        return LJ_ETOOBIG;
    }
    out->total = count;
    cJSON_ArrayForEach(item, list) {
        if (add_record(out, item, i++, o) != 0)
            return LJ_ENOMEM;
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * The parse arena
 *
 * cJSON allocates every value and key separately; on the upload path that
 * was a third of the producer's time in malloc and free. While a tree from
 * rec_json_parse() is alive, this thread's cJSON allocations come from a
 * bump arena instead, and the whole tree is dropped at once. The hooks are
 * process-wide but the arena is per thread; outside an arena (the consumer's
 * rec_batch_from_json) they fall through to malloc/free.
 * ------------------------------------------------------------------------ */

#define ARENA_BLOCK (64 * 1024)

typedef struct arena_block {
    struct arena_block *next;
    size_t cap;
    size_t used;
    max_align_t data[];
} arena_block;

static _Thread_local arena_block *tl_blocks;   /* newest first */
static _Thread_local int tl_trees;             /* trees alive on this thread */

static void *arena_malloc(size_t n)
{
    arena_block *b = tl_blocks;
    size_t align = sizeof(max_align_t);
    size_t need;

    if (tl_trees == 0)
        return malloc(n);
    if (n > ((size_t)-1 >> 1))
        return NULL;
    need = (n + align - 1) / align * align;
    if (b == NULL || b->cap - b->used < need) {
        size_t cap = need > ARENA_BLOCK ? need : ARENA_BLOCK;

        if ((b = malloc(sizeof(*b) + cap)) == NULL)
            return NULL;
        b->cap = cap;
        b->used = 0;
        b->next = tl_blocks;
        tl_blocks = b;
    }
    b->used += need;
    return (char *)b->data + b->used - need;
}

static void arena_free(void *p)
{
    if (tl_trees == 0)
        free(p);    /* arena memory goes with the arena */
}

/* Drops every block: nothing stays behind when the thread ends. */
static void arena_reset(void)
{
    while (tl_blocks) {
        arena_block *b = tl_blocks;

        tl_blocks = b->next;
        free(b);
    }
}

static pthread_once_t hooks_once = PTHREAD_ONCE_INIT;

static void install_hooks(void)
{
    cJSON_Hooks hooks = {arena_malloc, arena_free};

    cJSON_InitHooks(&hooks);
}

/* cJSON's hooks are a plain global: set them before main() starts any
 * thread, so no thread can be inside cJSON while they change. The
 * pthread_once in rec_json_parse() makes this an optimisation, not a need. */
__attribute__((constructor)) static void hooks_at_start(void)
{
    pthread_once(&hooks_once, install_hooks);
}

int rec_json_parse(const char *body, size_t len, int max_depth, cJSON **root,
                   const char **msg)
{
    const char *end = NULL;
    cJSON *tree;
    char *copy;
    int rc;

    pthread_once(&hooks_once, install_hooks);
    if ((rc = rec_prescan(body, len, max_depth)) != 0) {
        *msg = rc == LJ_EDEPTH ? "JSON nested too deeply"
                               : "body is not valid UTF-8 or contains a NUL";
        return rc;
    }
    if ((copy = malloc(len + 1)) == NULL) {
        *msg = "out of memory";
        return LJ_ENOMEM;
    }
    memcpy(copy, body, len);
    copy[len] = '\0';
    tl_trees++;
    /* The length counts the NUL, and require_null_terminated refuses any
     * byte after the value. */
    tree = cJSON_ParseWithLengthOpts(copy, len + 1, &end, 1);
    free(copy);
    if (tree == NULL) {
        rec_json_free(NULL);
        *msg = "body is not valid JSON";
        return LJ_EPARSE;
    }
    *root = tree;
    return 0;
}

void rec_json_free(cJSON *root)
{
    (void)root;     /* its memory is the arena's */
    if (tl_trees > 0 && --tl_trees == 0)
        arena_reset();
}

char *rec_json_print(const cJSON *v)
{
    char *text = cJSON_PrintUnformatted(v);     /* in the arena while a tree lives */
    char *copy = text ? strdup(text) : NULL;

    if (text)
        cJSON_free(text);
    return copy;
}

int rec_parse_body(const char *body, size_t len, const rec_opts *opts, rec_batch *out,
                   const char **msg)
{
    const cJSON *list;
    cJSON *root = NULL;
    int rc;

    *msg = NULL;
    if ((rc = rec_json_parse(body, len, opts->max_depth, &root, msg)) != 0)
        goto fail;
    if ((rc = find_records(root, out, &list, msg)) != 0)
        goto out;
    if ((rc = parse_records(list, opts, out, msg)) != 0 && *msg == NULL)
        *msg = "out of memory";
out:
    rec_json_free(root);
fail:
    if (rc != 0)
        rec_batch_cleanup(out);     /* nothing half-parsed reaches the caller */
    return rc;
}

/* ------------------------------------------------------------------------
 * The normalised payload
 *
 *     [{"device_sn":"A1","ts":1700000000000,"heart_rate":80,"temperature":36.6,
 *       "sleep":"...","source_method":"wifi"}, ...]
 * ------------------------------------------------------------------------ */

/* Appends 'v' as the shorter of %.15g and %.17g that reads back as 'v':
 * 36.6 stays 36.6, and the round trip is exact for every double. */
static int put_double(lj_buf *out, double v)
{
    char text[32];
    int n = snprintf(text, sizeof(text), "%.15g", v);

    if (strtod(text, NULL) != v)
        n = snprintf(text, sizeof(text), "%.17g", v);
    return lj_buf_append(out, text, (size_t)n);
}

static int put_key(lj_buf *out, const char *key)
{
    return lj_buf_puts(out, ",\"") || lj_buf_puts(out, key) || lj_buf_puts(out, "\":")
               ? LJ_ENOMEM : 0;
}

static int record_to_json(const rec_health *r, lj_buf *out)
{
    int f;

    if (lj_buf_puts(out, "{\"device_sn\":") != 0 ||
        lj_buf_json_str(out, r->device_sn, strlen(r->device_sn)) != 0 ||
        lj_buf_puts(out, ",\"ts\":") != 0 || lj_buf_int(out, r->ts_ms) != 0 ||
        (r->ts_us && (lj_buf_puts(out, ",\"ts_us\":") != 0 || lj_buf_int(out, r->ts_us) != 0)))
        return LJ_ENOMEM;
    for (f = 0; f < REC_NUM_FIELDS; f++) {
        if (!(r->present & (1u << f)))
            continue;
        if (put_key(out, fields[f].column) != 0 ||
            (fields[f].is_int ? lj_buf_int(out, (long long)r->num[f])
                              : put_double(out, r->num[f])) != 0)
            return LJ_ENOMEM;
    }
    if (r->sleep && (put_key(out, "sleep") != 0 ||
                     lj_buf_json_str(out, r->sleep, strlen(r->sleep)) != 0))
        return LJ_ENOMEM;
    if (put_key(out, "source_method") != 0 ||
        lj_buf_json_str(out, r->source_method, strlen(r->source_method)) != 0)
        return LJ_ENOMEM;
    return lj_buf_puts(out, "}");
}

int rec_batch_to_json(const rec_batch *b, lj_buf *out)
{
    size_t i;

    if (lj_buf_puts(out, "[") != 0)
        return LJ_ENOMEM;
    for (i = 0; i < b->n; i++)
        if ((i && lj_buf_puts(out, ",") != 0) || record_to_json(&b->recs[i], out) != 0)
            return LJ_ENOMEM;
    return lj_buf_puts(out, "]");
}

/* The string member 'key' of 'obj' (1..'max' bytes) into 'dst'. 0, or -1. */
static int string_item(const cJSON *obj, const char *key, char *dst, size_t max)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    size_t n;

    if (!cJSON_IsString(v) || v->valuestring == NULL)
        return -1;
    n = strlen(v->valuestring);
    if (n == 0 || n > max)
        return -1;
    memcpy(dst, v->valuestring, n + 1);
    return 0;
}

/* Reads one payload object into 'r'. 0, -1 (not that form; 'r->sleep' may
 * be set, to free) or LJ_ENOMEM. */
static int record_from_json(const cJSON *obj, rec_health *r)
{
    const cJSON *ts;
    const cJSON *us;
    const cJSON *sleep;
    int f;

    memset(r, 0, sizeof(*r));
    if (!cJSON_IsObject(obj))
        return -1;
    ts = cJSON_GetObjectItemCaseSensitive(obj, "ts");
    if (string_item(obj, "device_sn", r->device_sn, REC_SN_MAX) != 0 ||
        string_item(obj, "source_method", r->source_method, REC_SOURCE_MAX) != 0 ||
        !cJSON_IsNumber(ts) || ts->valuedouble != floor(ts->valuedouble) ||
        ts->valuedouble < TS_MIN_MS || ts->valuedouble >= TS_MAX_MS)
        return -1;
    r->ts_ms = (int64_t)ts->valuedouble;
    us = cJSON_GetObjectItemCaseSensitive(obj, "ts_us");
    if (us != NULL) {
        if (!cJSON_IsNumber(us) || us->valuedouble != floor(us->valuedouble) ||
            us->valuedouble < 0 || us->valuedouble > 999)
            return -1;
        r->ts_us = (uint16_t)us->valuedouble;
    }
    for (f = 0; f < REC_NUM_FIELDS; f++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, fields[f].column);
        double d;

        if (v == NULL)
            continue;
        if (!cJSON_IsNumber(v) || !isfinite(d = v->valuedouble))
            return -1;
        /* An integer column must take the value as it is, and the
         * conversion when printing it back must not overflow. */
        if (fields[f].is_int && (d != floor(d) || fabs(d) > INT_MAX_D))
            return -1;
        r->num[f] = d;
        r->present |= 1u << f;
    }
    sleep = cJSON_GetObjectItemCaseSensitive(obj, "sleep");
    if (sleep == NULL)
        return 0;
    if (!cJSON_IsString(sleep) || sleep->valuestring == NULL)
        return -1;
    return (r->sleep = strdup(sleep->valuestring)) ? 0 : LJ_ENOMEM;
}

int rec_batch_from_json(const char *json, size_t len, rec_batch *out)
{
    const char *msg;
    const cJSON *item;
    cJSON *root = NULL;
    size_t first = out->n;
    size_t total = out->total;
    int rc;

    /* The arena parse: the consumer reads a whole batch of these per
     * transaction. Our own payloads nest three deep at most. */
    if ((rc = rec_json_parse(json, len, 8, &root, &msg)) != 0)
        return rc == LJ_ENOMEM ? rc : LJ_EPARSE;
    if (!cJSON_IsArray(root)) {
        rc = LJ_EPARSE;
        goto out;
    }
    cJSON_ArrayForEach(item, root) {
        rec_health r;

        if ((rc = record_from_json(item, &r)) != 0 || (rc = push_record(out, &r)) != 0) {
            free(r.sleep);
            if (rc != LJ_ENOMEM)
                rc = LJ_EPARSE;
            break;
        }
        out->total++;
    }
    if (rc != 0) {      /* all or nothing */
        while (out->n > first)
            free(out->recs[--out->n].sleep);
        out->total = total;
    }
out:
    rec_json_free(root);
    return rc;
}
