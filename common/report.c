#include "report.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "err.h"

void rep_device_cleanup(rep_device *d)
{
    free(d->info);
    d->info = NULL;
}

void rep_event_cleanup(rep_event *e)
{
    free(e->payload);
    e->payload = NULL;
}

/* The first non-null value among 'keys'. */
static const cJSON *first_of(const cJSON *obj, const char *k1, const char *k2)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, k1);

    if ((v == NULL || cJSON_IsNull(v)) && k2)
        v = cJSON_GetObjectItemCaseSensitive(obj, k2);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

/* Copies an optional short text value ('max' bytes, printable, may hold
 * spaces) into 'dst'; "" when absent. -1 when present but not such text. */
static int read_text(const cJSON *v, char *dst, size_t max)
{
    const char *p;

    dst[0] = '\0';
    if (v == NULL)
        return 0;
    if (!cJSON_IsString(v) || v->valuestring == NULL || strlen(v->valuestring) > max)
        return -1;
    for (p = v->valuestring; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return -1;
    memcpy(dst, v->valuestring, strlen(v->valuestring) + 1);
    return 0;
}

static int read_serial(const cJSON *v, char *dst)
{
    if (v == NULL || !cJSON_IsString(v) || v->valuestring == NULL ||
        !rec_is_token(v->valuestring, REC_SN_MAX))
        return -1;
    memcpy(dst, v->valuestring, strlen(v->valuestring) + 1);
    return 0;
}

/* Battery 0..100 as a number or numeric string; -1 when absent. */
static int read_battery(const cJSON *v, int *out)
{
    double d;
    char *end;

    *out = -1;
    if (v == NULL)
        return 0;
    if (cJSON_IsNumber(v))
        d = v->valuedouble;
    else if (cJSON_IsString(v) && v->valuestring && *v->valuestring)
        d = strtod(v->valuestring, &end);
    else
        return -1;
    if (cJSON_IsString(v) && *end != '\0')
        return -1;
    if (!isfinite(d) || d != floor(d) || d < 0 || d > 100)
        return -1;
    *out = (int)d;
    return 0;
}

int rep_device_parse(const char *body, size_t len, const rec_opts *opts, rep_device *out,
                     const char **msg)
{
    char reason[REC_REASON_MAX];
    cJSON *root = NULL;
    int rc;

    memset(out, 0, sizeof(*out));
    if ((rc = rec_json_parse(body, len, opts->max_depth, &root, msg)) != 0)
        return rc;
    rc = LJ_EINVAL;
    if (!cJSON_IsObject(root)) {
        *msg = "device info must be a JSON object";
    } else if (read_serial(first_of(root, "SerialNumber", "deviceSn"), out->device_sn) != 0) {
        *msg = "SerialNumber or deviceSn must be 1..64 printable ASCII characters";
    } else if (rec_read_ts(root, opts, &out->ts_ms, reason) != 0) {
        *msg = "timestamp must be epoch seconds, epoch milliseconds or \"YYYY-MM-DD HH:MM:SS\"";
    } else if (read_battery(first_of(root, "batteryLevel", "battery"), &out->battery_level)) {
        *msg = "batteryLevel must be an integer 0..100";
    } else if (read_text(first_of(root, "wearState", "wear_state"), out->wear_state,
                         REP_TEXT_MAX) ||
               read_text(first_of(root, "firmwareVersion", "firmware"), out->firmware_version,
                         REP_TEXT_MAX)) {
        *msg = "wearState and firmwareVersion must be text of at most 64 characters";
    } else if ((out->info = rec_json_print(root)) == NULL) {
        *msg = "out of memory";
        rc = LJ_ENOMEM;
    } else {
        rc = 0;
    }
    rec_json_free(root);
    return rc;
}

int rep_event_parse(const char *body, size_t len, const rec_opts *opts, rep_event *out,
                    const char **msg)
{
    char reason[REC_REASON_MAX];
    const cJSON *type;
    cJSON *root = NULL;
    int rc;

    memset(out, 0, sizeof(*out));
    if ((rc = rec_json_parse(body, len, opts->max_depth, &root, msg)) != 0)
        return rc;
    rc = LJ_EINVAL;
    type = cJSON_IsObject(root) ? first_of(root, "eventType", "event_type") : NULL;
    if (!cJSON_IsObject(root)) {
        *msg = "event must be a JSON object";
    } else if (read_serial(first_of(root, "deviceSn", "id"), out->device_sn) != 0) {
        *msg = "deviceSn or id must be 1..64 printable ASCII characters";
    } else if (type == NULL || !cJSON_IsString(type) || type->valuestring == NULL ||
               !rec_is_token(type->valuestring, REP_TEXT_MAX)) {
        *msg = "eventType must be 1..64 printable ASCII characters";
    } else if (rec_read_ts(root, opts, &out->ts_ms, reason) != 0) {
        *msg = "timestamp must be epoch seconds, epoch milliseconds or \"YYYY-MM-DD HH:MM:SS\"";
    } else if ((out->payload = rec_json_print(root)) == NULL) {
        *msg = "out of memory";
        rc = LJ_ENOMEM;
    } else {
        memcpy(out->event_type, type->valuestring, strlen(type->valuestring) + 1);
        rc = 0;
    }
    rec_json_free(root);
    return rc;
}

/* '"key":' followed by 's' as a JSON string. */
static int put_str(lj_buf *out, const char *key, const char *s)
{
    if (lj_buf_printf(out, ",\"%s\":", key) != 0)
        return LJ_ENOMEM;
    return lj_buf_json_str(out, s, strlen(s));
}

static int put_head(lj_buf *out, const char *sn, int64_t ts_ms)
{
    if (lj_buf_puts(out, "{\"device_sn\":") != 0 || lj_buf_json_str(out, sn, strlen(sn)) != 0)
        return LJ_ENOMEM;
    return lj_buf_printf(out, ",\"ts\":%lld", (long long)ts_ms);
}

int rep_device_to_json(const rep_device *d, lj_buf *out)
{
    /* 'info' is JSON that cJSON printed: it is embedded as it is. */
    if (put_head(out, d->device_sn, d->ts_ms) != 0 ||
        (d->battery_level >= 0 && lj_buf_printf(out, ",\"battery_level\":%d",
                                                d->battery_level) != 0) ||
        put_str(out, "wear_state", d->wear_state) != 0 ||
        put_str(out, "firmware_version", d->firmware_version) != 0 ||
        lj_buf_puts(out, ",\"info\":") != 0 || lj_buf_puts(out, d->info) != 0)
        return LJ_ENOMEM;
    return lj_buf_puts(out, "}");
}

int rep_event_to_json(const rep_event *e, lj_buf *out)
{
    if (put_head(out, e->device_sn, e->ts_ms) != 0 ||
        put_str(out, "event_type", e->event_type) != 0 ||
        lj_buf_puts(out, ",\"payload\":") != 0 || lj_buf_puts(out, e->payload) != 0)
        return LJ_ENOMEM;
    return lj_buf_puts(out, "}");
}

/* Parses a payload object and reads its device and time. */
static cJSON *read_head(const char *json, size_t len, char *sn, int64_t *ts_ms)
{
    const char *msg;
    const cJSON *ts;
    cJSON *root = NULL;

    if (rec_json_parse(json, len, 1000, &root, &msg) != 0)
        return NULL;
    ts = cJSON_GetObjectItemCaseSensitive(root, "ts");
    if (!cJSON_IsObject(root) ||
        read_serial(cJSON_GetObjectItemCaseSensitive(root, "device_sn"), sn) != 0 ||
        !cJSON_IsNumber(ts) || ts->valuedouble != floor(ts->valuedouble) ||
        ts->valuedouble < 0 || ts->valuedouble > 1e15) {
        rec_json_free(root);
        return NULL;
    }
    *ts_ms = (int64_t)ts->valuedouble;
    return root;
}

int rep_device_from_json(const char *json, size_t len, rep_device *out)
{
    cJSON *root;
    const cJSON *info;
    int rc = LJ_EPARSE;

    memset(out, 0, sizeof(*out));
    if ((root = read_head(json, len, out->device_sn, &out->ts_ms)) == NULL)
        return LJ_EPARSE;
    info = cJSON_GetObjectItemCaseSensitive(root, "info");
    if (read_battery(cJSON_GetObjectItemCaseSensitive(root, "battery_level"),
                     &out->battery_level) != 0 ||
        read_text(cJSON_GetObjectItemCaseSensitive(root, "wear_state"), out->wear_state,
                  REP_TEXT_MAX) != 0 ||
        read_text(cJSON_GetObjectItemCaseSensitive(root, "firmware_version"),
                  out->firmware_version, REP_TEXT_MAX) != 0 ||
        !cJSON_IsObject(info))
        goto out;
    if ((out->info = rec_json_print(info)) == NULL) {
        rc = LJ_ENOMEM;
        goto out;
    }
    rc = 0;
out:
    rec_json_free(root);
    return rc;
}

int rep_event_from_json(const char *json, size_t len, rep_event *out)
{
    cJSON *root;
    const cJSON *type;
    const cJSON *payload;
    int rc = LJ_EPARSE;

    memset(out, 0, sizeof(*out));
    if ((root = read_head(json, len, out->device_sn, &out->ts_ms)) == NULL)
        return LJ_EPARSE;
    type = cJSON_GetObjectItemCaseSensitive(root, "event_type");
    payload = cJSON_GetObjectItemCaseSensitive(root, "payload");
    if (!cJSON_IsString(type) || type->valuestring == NULL ||
        !rec_is_token(type->valuestring, REP_TEXT_MAX) || !cJSON_IsObject(payload))
        goto out;
    memcpy(out->event_type, type->valuestring, strlen(type->valuestring) + 1);
    if ((out->payload = rec_json_print(payload)) == NULL) {
        rc = LJ_ENOMEM;
        goto out;
    }
    rc = 0;
out:
    rec_json_free(root);
    return rc;
}
