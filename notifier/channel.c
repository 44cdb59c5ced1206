#include "channel.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "err.h"
#include "text.h"

/* ---- Bodies ------------------------------------------------------------ */

/* A JSON number from PostgreSQL's text, or null when it is empty. */
static cJSON *number_or_null(const char *s)
{
    char *end;
    double d;

    if (*s == '\0')
        return cJSON_CreateNull();
    d = strtod(s, &end);
    return *end == '\0' ? cJSON_CreateNumber(d) : cJSON_CreateString(s);
}

static cJSON *string_or_null(const char *s)
{
    return *s ? cJSON_CreateString(s) : cJSON_CreateNull();
}

/* Appends the printed tree 'o' (deleted here) to 'out'. */
static int put_json(lj_buf *out, cJSON *o)
{
    char *text = o ? cJSON_PrintUnformatted(o) : NULL;
    int rc = text ? lj_buf_puts(out, text) : LJ_ENOMEM;

    free(text);
    cJSON_Delete(o);
    return rc ? LJ_ENOMEM : 0;
}

/*   {"id":42,"device_sn":"SN1","user":7,"user_name":"Li Lei","org":3,
 *    "type":"heart_rate","value":150,"level":"major","time":"...Z"} */
static int webhook_body(const notify_alert *a, lj_buf *out)
{
    cJSON *o = cJSON_CreateObject();

    if (o == NULL)
        return LJ_ENOMEM;
    cJSON_AddItemToObject(o, "id", number_or_null(a->id));
    cJSON_AddItemToObject(o, "device_sn", cJSON_CreateString(a->device_sn));
    cJSON_AddItemToObject(o, "user", number_or_null(a->user_id));
    cJSON_AddItemToObject(o, "user_name", string_or_null(a->user_name));
    cJSON_AddItemToObject(o, "org", number_or_null(a->org_id));
    cJSON_AddItemToObject(o, "type", cJSON_CreateString(a->type));
    cJSON_AddItemToObject(o, "value", number_or_null(a->value));
    cJSON_AddItemToObject(o, "level", cJSON_CreateString(a->level));
    cJSON_AddItemToObject(o, "time", cJSON_CreateString(a->time));
    return put_json(out, o);
}

/* The title line: level and type come from our rules, not from devices. */
static void title_of(const notify_alert *a, char *out, size_t len)
{
    snprintf(out, len, "ljwx alert: %s %s", a->level, a->type);
}

/* The markdown both robots show: wearer, device, value, level, time. */
static int markdown_text(const notify_alert *a, lj_buf *md)
{
    int rc = 0;

    rc |= lj_buf_puts(md, "### ljwx alert: ");
    rc |= text_markdown_escape(md, a->level);
    rc |= lj_buf_puts(md, " ");
    rc |= text_markdown_escape(md, a->type);
    rc |= lj_buf_puts(md, "\n\n**Wearer:** ");
    rc |= text_markdown_escape(md, *a->user_name ? a->user_name : "(no user bound)");
    if (*a->user_id) {
        rc |= lj_buf_puts(md, " (user ");
        rc |= text_markdown_escape(md, a->user_id);
        rc |= lj_buf_puts(md, ")");
    }
    rc |= lj_buf_puts(md, "\n\n**Device:** ");
    rc |= text_markdown_escape(md, a->device_sn);
    rc |= lj_buf_puts(md, "\n\n**Value:** ");
    rc |= text_markdown_escape(md, *a->value ? a->value : "event");
    rc |= lj_buf_puts(md, "\n\n**Level:** ");
    rc |= text_markdown_escape(md, a->level);
    rc |= lj_buf_puts(md, "\n\n**Time:** ");
    rc |= text_markdown_escape(md, a->time);
    rc |= lj_buf_puts(md, "\n\n**Alert:** ");
    rc |= text_markdown_escape(md, a->id);
    return rc ? LJ_ENOMEM : 0;
}

/* WeChat Work:  {"msgtype":"markdown","markdown":{"content":"..."}}
 * DingTalk:     {"msgtype":"markdown","markdown":{"title":"...","text":"..."}} */
static int robot_body(const notify_alert *a, int dingtalk, lj_buf *out)
{
    char title[128];
    cJSON *o = cJSON_CreateObject();
    cJSON *m = cJSON_CreateObject();
    lj_buf md;
    int rc;

    lj_buf_init(&md);
    if (o == NULL || m == NULL || (rc = markdown_text(a, &md)) != 0) {
        cJSON_Delete(o);
        cJSON_Delete(m);
        lj_buf_cleanup(&md);
        return LJ_ENOMEM;
    }
    cJSON_AddStringToObject(o, "msgtype", "markdown");
    if (dingtalk) {
        title_of(a, title, sizeof(title));
        cJSON_AddStringToObject(m, "title", title);
        cJSON_AddStringToObject(m, "text", md.data);
    } else {
        cJSON_AddStringToObject(m, "content", md.data);
    }
    cJSON_AddItemToObject(o, "markdown", m);
    lj_buf_cleanup(&md);
    return put_json(out, o);
}

#define SMS_VARS 9

/* The placeholders of the SMS template. '*text' is the one-line summary. */
static void sms_vars(const notify_alert *a, char *text, size_t len, text_var *v)
{
    const char *who = *a->user_name ? a->user_name : *a->user_id ? a->user_id : "-";
    size_t i;

    snprintf(text, len, "[ljwx] %s %s%s%s device %s wearer %s at %s", a->level, a->type,
             *a->value ? " " : "", a->value, a->device_sn, who, a->time);
    for (i = 0; text[i]; i++)
        if ((unsigned char)text[i] < 0x20)
            text[i] = ' ';
    v[0] = (text_var){"id", a->id};
    v[1] = (text_var){"device_sn", a->device_sn};
    v[2] = (text_var){"user", who};
    v[3] = (text_var){"org", a->org_id};
    v[4] = (text_var){"type", a->type};
    v[5] = (text_var){"value", a->value};
    v[6] = (text_var){"level", a->level};
    v[7] = (text_var){"time", a->time};
    v[8] = (text_var){"text", text};
}

static int sms_body(const channel_set *s, const notify_alert *a, lj_buf *out)
{
    text_var v[SMS_VARS];
    char text[512];
    const char *err;

    sms_vars(a, text, sizeof(text), v);
    return text_expand(out, s->sms_template, v, SMS_VARS,
                       s->sms_form ? TEXT_ESC_FORM : TEXT_ESC_JSON, &err);
}

/* ---- Replies ----------------------------------------------------------- */

/* A robot answers 200 with {"errcode":0,"errmsg":"ok"}; its rate limit
 * (WeChat Work 45009, DingTalk 130101) and "system busy" (-1) are worth a
 * retry, other codes are not. */
static channel_verdict robot_judge(const post_reply *r, char *why, size_t whylen)
{
    /* The length counts the NUL: cJSON then checks nothing trails the JSON. */
    cJSON *o = cJSON_ParseWithLengthOpts(r->body, r->body_len + 1, NULL, 1);
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(o, "errcode");
    channel_verdict v;
    double c;

    if (r->truncated || !cJSON_IsNumber(code)) {
        snprintf(why, whylen, "HTTP %ld without the robot's errcode", r->status);
        cJSON_Delete(o);
        return CHANNEL_RETRY;
    }
    c = code->valuedouble;
    if (c == 0)
        v = CHANNEL_DELIVERED;
    else
        v = (c == 45009 || c == 130101 || c == -1) ? CHANNEL_RETRY : CHANNEL_DEAD;
    if (v != CHANNEL_DELIVERED)
        snprintf(why, whylen, "robot errcode %.0f", c);
    cJSON_Delete(o);
    return v;
}

/* ---- The one list of kinds ----------------------------------------------- */

typedef struct kind_def {
    const char *route;          /* t_notify_route.channel, and the first target's name */
    int robot;                  /* 2xx is judged by errcode */
} kind_def;

static const kind_def kinds[CHANNEL_KINDS] = {
    [CHANNEL_WEBHOOK] = {"webhook", 0},
    [CHANNEL_WECHAT] = {"wechat", 1},
    [CHANNEL_DINGTALK] = {"dingtalk", 1},
    [CHANNEL_SMS] = {"sms", 0},
};

const char *channel_route_name(channel_kind k)
{
    return kinds[k].route;
}

int channel_body(const channel_set *s, const channel_target *t, const notify_alert *a,
                 lj_buf *out, const char **type)
{
    *type = "application/json";
    switch (t->kind) {
    case CHANNEL_WEBHOOK:
        return webhook_body(a, out);
    case CHANNEL_WECHAT:
    case CHANNEL_DINGTALK:
        return robot_body(a, t->kind == CHANNEL_DINGTALK, out);
    case CHANNEL_SMS:
        *type = s->sms_content_type;
        return sms_body(s, a, out);
    default:
        return LJ_EINVAL;
    }
}

channel_verdict channel_judge(channel_kind k, int rc, const post_reply *r, char *why,
                              size_t whylen)
{
    if (rc != 0) {
        snprintf(why, whylen, "%s", r->error[0] ? r->error : "no answer");
        return CHANNEL_RETRY;
    }
    if (r->status == 429 || r->status >= 500) {
        snprintf(why, whylen, "HTTP %ld", r->status);
        return CHANNEL_RETRY;
    }
    if (r->status < 200 || r->status > 299) {
        snprintf(why, whylen, "HTTP %ld%s", r->status,
                 r->status >= 300 && r->status < 400 ? " (redirects are not followed)" : "");
        return CHANNEL_DEAD;
    }
    if (kinds[k].robot)
        return robot_judge(r, why, whylen);
    why[0] = '\0';
    return CHANNEL_DELIVERED;
}

/* ---- Loading ------------------------------------------------------------- */

static int add_target(channel_set *s, channel_kind k, const char *name, const char *url,
                      char *err, size_t errlen)
{
    channel_target *t = &s->targets[s->n];

    if (strlen(url) >= sizeof(t->url)) {
        snprintf(err, errlen, "%s: URL longer than %zu bytes", name, sizeof(t->url) - 1);
        return LJ_EINVAL;
    }
    if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) {
        snprintf(err, errlen, "%s: URL must start with http:// or https://", name);
        return LJ_EINVAL;
    }
    memset(t, 0, sizeof(*t));
    t->kind = k;
    snprintf(t->name, sizeof(t->name), "%s", name);
    snprintf(t->url, sizeof(t->url), "%s", url);
    text_url_host(url, t->host, sizeof(t->host));
    s->n++;
    return 0;
}

static int load_webhooks(channel_set *s, const char *list, char *err, size_t errlen)
{
    char urls[CHANNEL_MAX_WEBHOOKS][CHANNEL_URL_MAX];
    char name[24];
    int n = text_split_list(list, &urls[0][0], CHANNEL_URL_MAX, CHANNEL_MAX_WEBHOOKS);
    int rc;
    int i;

    if (n < 0) {
        snprintf(err, errlen, "alert_webhook_url: at most %d URLs of at most %d bytes",
                 CHANNEL_MAX_WEBHOOKS, CHANNEL_URL_MAX - 1);
        return LJ_EINVAL;
    }
    for (i = 0; i < n; i++) {
        if (i == 0)
            snprintf(name, sizeof(name), "webhook");
        else
            snprintf(name, sizeof(name), "webhook%d", (i + 1) % 100);
        if ((rc = add_target(s, CHANNEL_WEBHOOK, name, urls[i], err, errlen)) != 0)
            return rc;
    }
    return 0;
}

/* The SMS template must expand for a sample alert. */
static int check_sms(channel_set *s, char *err, size_t errlen)
{
    const notify_alert sample = {"1", "SN", "1", "name", "1", "SOS", "", "critical", "t"};
    text_var v[SMS_VARS];
    char text[512];
    const char *why = NULL;
    lj_buf out;
    int rc;

    if (strcasecmp(s->sms_content_type, "application/json") == 0)
        s->sms_form = 0;
    else if (strcasecmp(s->sms_content_type, "application/x-www-form-urlencoded") == 0)
        s->sms_form = 1;
    else {
        snprintf(err, errlen, "alert_sms_content_type: application/json or "
                              "application/x-www-form-urlencoded");
        return LJ_EINVAL;
    }
    if (s->sms_template[0] == '\0') {
        snprintf(err, errlen, "alert_sms_url is set: alert_sms_template must be too");
        return LJ_EINVAL;
    }
    sms_vars(&sample, text, sizeof(text), v);
    lj_buf_init(&out);
    rc = text_expand(&out, s->sms_template, v, SMS_VARS, TEXT_ESC_JSON, &why);
    lj_buf_cleanup(&out);
    if (rc == LJ_EINVAL)
        snprintf(err, errlen, "alert_sms_template: %s", why);
    return rc;
}

int channel_set_load(channel_set *s, const lj_config *cfg, char *err, size_t errlen)
{
    int rc;

    memset(s, 0, sizeof(*s));
    s->sms_template = cfg->alert_sms_template;
    s->sms_content_type = cfg->alert_sms_content_type;
    if ((rc = load_webhooks(s, cfg->alert_webhook_url, err, errlen)) != 0)
        return rc;
    if (cfg->alert_wechat_url[0] &&
        (rc = add_target(s, CHANNEL_WECHAT, "wechat", cfg->alert_wechat_url, err, errlen)) != 0)
        return rc;
    if (cfg->alert_dingtalk_url[0] && (rc = add_target(s, CHANNEL_DINGTALK, "dingtalk",
                                                       cfg->alert_dingtalk_url, err,
                                                       errlen)) != 0)
        return rc;
    if (cfg->alert_sms_url[0]) {
        if ((rc = check_sms(s, err, errlen)) != 0)
            return rc;
        if ((rc = add_target(s, CHANNEL_SMS, "sms", cfg->alert_sms_url, err, errlen)) != 0)
            return rc;
    }
    return 0;
}
