/* alert.h -- one alert as the notifier delivers it (a t_alert_info row).
 *
 * Plain data, filled by outbox.c from PostgreSQL's text results; the
 * channels (channel.c) turn it into bodies. Values are text as PostgreSQL
 * gave them; "" where the column is NULL.
 */
#ifndef LJ_NOTIFIER_ALERT_H
#define LJ_NOTIFIER_ALERT_H

typedef struct notify_alert {
    char id[24];
    char device_sn[72];
    char user_id[24];       /* "" when the device is bound to no user */
    char user_name[72];
    char org_id[24];
    char type[72];          /* heart_rate, SOS, ... */
    char value[32];         /* "" for events */
    char level[16];         /* minor, major, critical */
    char time[40];          /* alert_time, UTC, ISO 8601 with ms */
} notify_alert;

#endif
