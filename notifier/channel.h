/* channel.h -- the delivery targets: generic webhooks, the WeChat Work and
 * DingTalk group robots, an SMS gateway.
 *
 * The one list of channel kinds is in channel.c: per kind its name in
 * t_notify_route, the body it sends and how it reads the reply. A target
 * is one configured URL of a kind; its name ("webhook", "webhook2", ...,
 * "wechat", "dingtalk", "sms") is the channel of t_alert_delivery and the
 * label of the metrics. Loaded once at start; read-only afterwards except
 * for the atomic counters (any thread).
 */
#ifndef LJ_NOTIFIER_CHANNEL_H
#define LJ_NOTIFIER_CHANNEL_H

#include <stdatomic.h>
#include <stddef.h>

#include "alert.h"
#include "buf.h"
#include "config.h"
#include "metrics.h"
#include "post.h"

#define CHANNEL_MAX_WEBHOOKS 8
#define CHANNEL_MAX_TARGETS (CHANNEL_MAX_WEBHOOKS + 3)
#define CHANNEL_URL_MAX 1024

typedef enum channel_kind { CHANNEL_WEBHOOK = 0, CHANNEL_WECHAT, CHANNEL_DINGTALK, CHANNEL_SMS,
                            CHANNEL_KINDS } channel_kind;

/* What one reply means for the delivery. */
typedef enum channel_verdict {
    CHANNEL_DELIVERED = 0,
    CHANNEL_RETRY,          /* network error, timeout, 5xx, 429, a robot's rate limit */
    CHANNEL_DEAD            /* any other answer: retrying will not help */
} channel_verdict;

typedef struct channel_stats {
    atomic_ullong attempts;
    atomic_ullong delivered;
    atomic_ullong retries;      /* attempts that failed and will be retried */
    atomic_ullong dead;         /* deliveries that became dead letters */
    metrics_hist seconds;       /* duration of each attempt */
} channel_stats;

typedef struct channel_target {
    channel_kind kind;
    char name[16];
    char url[CHANNEL_URL_MAX];
    char host[128];             /* what the log may show of 'url' */
    channel_stats stats;
} channel_target;

typedef struct channel_set {
    channel_target targets[CHANNEL_MAX_TARGETS];
    int n;
    const char *sms_template;   /* borrowed from the configuration */
    const char *sms_content_type;
    int sms_form;               /* 1: form-encoded, 0: JSON */
} channel_set;

/* Fills 's' from the alert_* settings of 'cfg' ('cfg' must outlive 's').
 * 0, or LJ_EINVAL with the reason in 'err' (too many or too long webhook
 * URLs, an SMS URL without a template, an unknown SMS content type, a bad
 * placeholder); never a URL in 'err'. Zero targets is valid. */
int channel_set_load(channel_set *s, const lj_config *cfg, char *err, size_t errlen);

/* The t_notify_route.channel of kind 'k' ("webhook", ...). */
const char *channel_route_name(channel_kind k);

/* Writes the body 't' sends for 'a' into 'out' and its Content-Type into
 * '*type'. 0, LJ_ENOMEM, or LJ_EINVAL (the SMS template failed). */
int channel_body(const channel_set *s, const channel_target *t, const notify_alert *a,
                 lj_buf *out, const char **type);

/* Reads the outcome of post_send() ('rc', '*r') for a target of kind 'k'
 * and writes a short reason (no URL, no secret) into 'why'. */
channel_verdict channel_judge(channel_kind k, int rc, const post_reply *r, char *why,
                              size_t whylen);

#endif
