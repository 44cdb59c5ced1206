/* report.h -- device status reports and device events (SPEC §2.2).
 *
 * The producer validates an upload body into a rep_device or rep_event and
 * sends it through the stream as compact JSON:
 *
 *     device info: {"device_sn":"A1","ts":1700000000000,"battery_level":80,
 *                   "wear_state":"worn","firmware_version":"1.2.3","info":{...}}
 *     event:       {"device_sn":"A1","ts":1700000000000,"event_type":"SOS",
 *                   "payload":{...}}
 *
 * 'info' and 'payload' are the whole upload object, as compact JSON. The
 * consumer reads them back with rep_*_from_json(). Pure functions.
 */
#ifndef LJ_COMMON_REPORT_H
#define LJ_COMMON_REPORT_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "record.h"

#define REP_TEXT_MAX 64     /* event_type, wear_state, firmware_version */

typedef struct rep_device {
    char device_sn[REC_SN_MAX + 1];
    int64_t ts_ms;                  /* report time (its "timestamp", else receive time) */
    int battery_level;              /* 0..100, or -1 when not reported */
    char wear_state[REP_TEXT_MAX + 1];
    char firmware_version[REP_TEXT_MAX + 1];
    char *info;                     /* owned: the report object as compact JSON */
} rep_device;

typedef struct rep_event {
    char device_sn[REC_SN_MAX + 1];
    int64_t ts_ms;                  /* event time (its "timestamp", else receive time) */
    char event_type[REP_TEXT_MAX + 1];
    char *payload;                  /* owned: the event object as compact JSON */
} rep_event;

void rep_device_cleanup(rep_device *d);
void rep_event_cleanup(rep_event *e);

/* Validates a device status body (a JSON object with "SerialNumber" or
 * "deviceSn"; optional "timestamp" as for health records, "batteryLevel"
 * or "battery" 0..100, "wearState", "firmwareVersion"). Returns 0, or
 * LJ_EPARSE / LJ_EDEPTH / LJ_EINVAL with a message for the client in 'msg'
 * (static string). 'opts' as for rec_parse_body (max_records unused). */
int rep_device_parse(const char *body, size_t len, const rec_opts *opts, rep_device *out,
                     const char **msg);

/* Validates an event body (a JSON object with "deviceSn" or "id", an
 * "eventType" of 1..64 printable ASCII, optional "timestamp"). As above. */
int rep_event_parse(const char *body, size_t len, const rec_opts *opts, rep_event *out,
                    const char **msg);

int rep_device_to_json(const rep_device *d, lj_buf *out);
int rep_event_to_json(const rep_event *e, lj_buf *out);

/* Read what rep_*_to_json() wrote; LJ_EPARSE for anything else. */
int rep_device_from_json(const char *json, size_t len, rep_device *out);
int rep_event_from_json(const char *json, size_t len, rep_event *out);

#endif
