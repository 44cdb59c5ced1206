#include "ledger.h"

#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "rds.h"
#include "streams.h"

enum term { T_ACCEPTED, T_STORED, T_DUPLICATES, T_DEAD, T_GONE, T_PENDING, T_UNDELIVERED, T_N };

static const char *const term_names[T_N] = {"accepted", "stored", "duplicates", "dead_lettered",
                                            "gone", "pending", "undelivered"};

typedef struct probe {
    struct ledger *l;
    stream_kind kind;
    unsigned shard;
} probe;

/* INFO persistence of one master (on one Redis, the one: 'master' "").
 * A round reads at most one a shard; the last round's are kept beside it
 * until read again, hence twice as many places. */
#define AOF_READINGS_MAX (2 * STREAM_SHARDS_MAX)
typedef struct aof_reading {
    struct ledger *l;
    char master[RCLUSTER_NAME_MAX];
    long long current;              /* bytes; -1: AOF off or unknown */
    long long base;
} aof_reading;

typedef struct figures {
    long long v[T_N];
    int groups_ok;          /* the XINFO GROUPS part was read */
    int counts_ok;          /* the HGETALL part was read */
} figures;

struct ledger {
    uv_timer_t timer;
    rcluster *link;
    unsigned nshards;
    int tagged;                     /* shard names carry the hash tag (stream_tagged) */
    char prefix[64];
    char names[STREAM_KINDS][STREAM_NAME_MAX];     /* the streams' plain names: labels */
    char groups[STREAM_KINDS][STREAM_NAME_MAX];
    /* Per shard, [kind * nshards + shard]: */
    figures *next;                  /* being read */
    figures *last;                  /* the shard's last complete reading */
    probe *probes;
    figures shown[STREAM_KINDS];    /* the sum of every shard's last complete reading */
    aof_reading *aof;               /* of the masters holding a health shard */
    size_t naof;
    int outstanding;
    int closed;
};

static void ledger_free(ledger *l)
{
    free(l->next);
    free(l->last);
    free(l->probes);
    free(l->aof);
    free(l);
}

static size_t index_of(const ledger *l, const probe *p)
{
    return (size_t)(p - l->probes);
}

/* A kind's figures are shown once every shard of it has been read whole. */
static void publish(ledger *l, const probe *p)
{
    size_t i = index_of(l, p);
    size_t first = (size_t)p->kind * l->nshards;
    figures sum;
    size_t j;
    int t;

    if (!l->next[i].groups_ok || !l->next[i].counts_ok)
        return;
    l->last[i] = l->next[i];
    memset(&sum, 0, sizeof(sum));
    for (j = first; j < first + l->nshards; j++) {
        if (!l->last[j].groups_ok || !l->last[j].counts_ok)
            return;
        for (t = 0; t < T_N; t++)
            sum.v[t] += l->last[j].v[t];
    }
    sum.groups_ok = sum.counts_ok = 1;
    l->shown[p->kind] = sum;
}

/* Releases 'l' when it was closed and this was its last reply. */
static int last_reply(ledger *l)
{
    if (--l->outstanding == 0 && l->closed) {
        ledger_free(l);
        return 1;
    }
    return 0;
}

/* Both reads in one script: a settle between them would unbalance it. */
static const char read_script[] =
    "return {redis.call('XINFO', 'GROUPS', KEYS[1]), redis.call('HGETALL', KEYS[2])}";

static void read_groups(ledger *l, const probe *p, const redisReply *r)
{
    figures *f = &l->next[index_of(l, p)];
    size_t i;

    if (r->type != REDIS_REPLY_ARRAY)
        return;
    for (i = 0; i < r->elements; i++) {
        const redisReply *name = rds_map_get(r->element[i], "name");
        const redisReply *lag = rds_map_get(r->element[i], "lag");
        long long read = rds_map_int(r->element[i], "entries-read");

        if (name == NULL || name->type != REDIS_REPLY_STRING ||
            strcmp(name->str, l->groups[p->kind]) != 0)
            continue;
        if (lag == NULL || lag->type != REDIS_REPLY_INTEGER || read < 0)
            return;     /* Redis cannot tell the lag now: keep the last reading */
        f->v[T_PENDING] = rds_map_int(r->element[i], "pending");
        f->v[T_UNDELIVERED] = lag->integer;
        f->v[T_ACCEPTED] = read + lag->integer;
        f->groups_ok = 1;
    }
}

static void read_counts(ledger *l, const probe *p, const redisReply *r)
{
    static const struct { const char *field; enum term t; } map[] = {
        {STREAM_COUNT_STORED, T_STORED}, {STREAM_COUNT_DUPLICATE, T_DUPLICATES},
        {STREAM_COUNT_DEAD, T_DEAD}, {STREAM_COUNT_GONE, T_GONE},
    };
    figures *f = &l->next[index_of(l, p)];
    size_t i;
    size_t j;

    if (r->type != REDIS_REPLY_ARRAY)
        return;
    for (j = 0; j < sizeof(map) / sizeof(map[0]); j++)
        f->v[map[j].t] = 0;
    for (i = 0; i + 1 < r->elements; i += 2)
        for (j = 0; j < sizeof(map) / sizeof(map[0]); j++)
            if (r->element[i]->type == REDIS_REPLY_STRING &&
                strcmp(r->element[i]->str, map[j].field) == 0 &&
                r->element[i + 1]->type == REDIS_REPLY_STRING)
                f->v[map[j].t] = strtoll(r->element[i + 1]->str, NULL, 10);
    f->counts_ok = 1;
}

static void on_reply(redisReply *r, void *arg)
{
    probe *p = arg;
    ledger *l = p->l;

    if (last_reply(l) || r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2)
        return;
    read_groups(l, p, r->element[0]);
    read_counts(l, p, r->element[1]);
    publish(l, p);
}

/* The integer after "\n<field>:" (or at the start) in an INFO reply, or -1. */
static long long info_field(const char *info, const char *field)
{
    size_t flen = strlen(field);
    const char *p = info;

    while ((p = strstr(p, field)) != NULL) {
        if ((p == info || p[-1] == '\n') && p[flen] == ':')
            return strtoll(p + flen + 1, NULL, 10);
        p += flen;
    }
    return -1;
}

static void on_info(redisReply *r, void *arg)
{
    aof_reading *a = arg;

    if (last_reply(a->l) || r == NULL || r->type != REDIS_REPLY_STRING)
        return;     /* keep the last reading */
    if (info_field(r->str, "aof_enabled") == 1) {
        a->current = info_field(r->str, "aof_current_size");
        a->base = info_field(r->str, "aof_base_size");
    } else {
        a->current = a->base = -1;
    }
}

/* The reading of 'master' in this round: the last round's (its figures
 * kept until read again) or a new one; NULL when it is one already. */
static aof_reading *aof_entry(ledger *l, const char *master, size_t fresh)
{
    aof_reading keep;
    size_t i;

    for (i = 0; i < l->naof; i++) {
        if (strcmp(l->aof[i].master, master) != 0)
            continue;
        if (i < fresh)
            return NULL;    /* asked already in this round */
        keep = l->aof[i];
        l->aof[i] = l->aof[fresh];
        l->aof[fresh] = keep;
        return &l->aof[fresh];
    }
    if (fresh < l->naof)
        l->aof[l->naof] = l->aof[fresh];        /* the last round's, kept */
    l->naof++;
    l->aof[fresh] = (aof_reading){l, "", -1, -1};
    snprintf(l->aof[fresh].master, sizeof(l->aof[fresh].master), "%s", master);
    return &l->aof[fresh];
}

/* INFO persistence of each master holding a health shard (on one Redis,
 * of it), routed by the shard's name; masters no longer holding one are
 * forgotten. */
static void poll_info(ledger *l)
{
    const char *argv[] = {"INFO", "persistence"};
    const size_t lens[] = {4, 11};
    char name[STREAM_NAME_MAX];
    char master[RCLUSTER_NAME_MAX];
    size_t fresh = 0;
    unsigned k;

    for (k = 0; k < l->nshards; k++) {
        aof_reading *a;

        stream_shard_name(name, sizeof(name), l->prefix, STREAM_HEALTH, k, l->tagged);
        if (rcluster_master_name(l->link, name, master, sizeof(master)) != 0)
            master[0] = '\0';      /* one Redis, or no map yet */
        if ((a = aof_entry(l, master, fresh)) == NULL)
            continue;
        fresh++;
        if (rcluster_command(l->link, name, 2, argv, lens, on_info, a) == 0)
            l->outstanding++;
    }
    l->naof = fresh;
}

static void poll_streams(uv_timer_t *t)
{
    ledger *l = t->data;
    size_t k;

    if (l->outstanding)
        return;     /* the last round is still out */
    for (k = 0; k < STREAM_KINDS * l->nshards; k++) {
        char name[STREAM_NAME_MAX];
        char counts[STREAM_KEY_MAX];
        const char *argv[] = {"EVAL", read_script, "2", name, counts};
        size_t lens[5];
        int i;

        stream_shard_name(name, sizeof(name), l->prefix, l->probes[k].kind, l->probes[k].shard,
                          l->tagged);
        stream_side_key(counts, sizeof(counts), name, STREAM_SIDE_COUNTS);
        for (i = 0; i < 5; i++)
            lens[i] = strlen(argv[i]);
        memset(&l->next[k], 0, sizeof(l->next[k]));
        if (rcluster_command(l->link, name, 5, argv, lens, on_reply, &l->probes[k]) == 0)
            l->outstanding++;
    }
    poll_info(l);
}

ledger *ledger_new(uv_loop_t *loop, rcluster *link, const lj_config *cfg)
{
    ledger *l = calloc(1, sizeof(*l));
    size_t n = STREAM_KINDS * (size_t)cfg->stream_shards;
    size_t i;
    int k;

    if (l == NULL)
        return NULL;
    l->link = link;
    l->aof = calloc(AOF_READINGS_MAX, sizeof(*l->aof));
    l->nshards = (unsigned)cfg->stream_shards;
    l->tagged = stream_tagged(l->nshards, rcluster_is_cluster(link));
    memcpy(l->prefix, cfg->stream_prefix, sizeof(l->prefix));
    l->next = calloc(n, sizeof(*l->next));
    l->last = calloc(n, sizeof(*l->last));
    l->probes = calloc(n, sizeof(*l->probes));
    if (l->next == NULL || l->last == NULL || l->probes == NULL || l->aof == NULL) {
        ledger_free(l);
        return NULL;
    }
    for (k = 0; k < STREAM_KINDS; k++) {
        stream_name(l->names[k], sizeof(l->names[k]), cfg->stream_prefix, (stream_kind)k);
        stream_group(l->groups[k], sizeof(l->groups[k]), cfg->stream_prefix, (stream_kind)k);
    }
    for (i = 0; i < n; i++) {
        l->probes[i].l = l;
        l->probes[i].kind = (stream_kind)(i / l->nshards);
        l->probes[i].shard = (unsigned)(i % l->nshards);
    }
    uv_timer_init(loop, &l->timer);
    l->timer.data = l;
    uv_timer_start(&l->timer, poll_streams, 0, (uint64_t)cfg->ratio_refresh_ms);
    return l;
}

static void on_closed(uv_handle_t *h)
{
    ledger *l = h->data;

    l->closed = 1;
    if (l->outstanding == 0)
        ledger_free(l);
}

void ledger_close(ledger *l)
{
    uv_close((uv_handle_t *)&l->timer, on_closed);
}

static int balanced(const figures *f)
{
    long long rhs = 0;
    int t;

    for (t = T_STORED; t < T_N; t++)
        rhs += f->v[t];
    return f->v[T_ACCEPTED] == rhs;
}

int ledger_render_json(const ledger *l, lj_buf *out)
{
    int k;
    int t;

    if (lj_buf_puts(out, ",\"conservation\":{") != 0)
        return LJ_ENOMEM;
    for (k = 0; k < STREAM_KINDS; k++) {
        const figures *f = &l->shown[k];

        if ((k && lj_buf_puts(out, ",") != 0) ||
            lj_buf_json_str(out, l->names[k], strlen(l->names[k])) != 0 ||
            lj_buf_puts(out, ":") != 0)
            return LJ_ENOMEM;
        if (!f->groups_ok) {
            if (lj_buf_puts(out, "null") != 0)
                return LJ_ENOMEM;
            continue;
        }
        for (t = 0; t < T_N; t++)
            if (lj_buf_printf(out, "%s\"%s\":%lld", t ? "," : "{", term_names[t], f->v[t]) != 0)
                return LJ_ENOMEM;
        if (lj_buf_printf(out, ",\"balanced\":%s}", balanced(f) ? "true" : "false") != 0)
            return LJ_ENOMEM;
    }
    return lj_buf_puts(out, "}");
}

/* One AOF size of every master read ('base': after the last rewrite),
 * labelled by master on a cluster; both sizes of a master, or neither (AOF
 * off, or not read yet). */
static int render_aof_family(const ledger *l, lj_buf *out, int base)
{
    const char *name = base ? "ljwx_redis_aof_base_bytes" : "ljwx_redis_aof_current_bytes";
    size_t i;

    if (lj_buf_printf(out, "# HELP %s Size of Redis's append-only file%s (INFO persistence; "
                           "absent when AOF is off; on a cluster, per master).\n"
                           "# TYPE %s gauge\n",
                      name, base ? " after its last rewrite" : "", name) != 0)
        return LJ_ENOMEM;
    for (i = 0; i < l->naof; i++) {
        const aof_reading *a = &l->aof[i];

        if (a->current < 0 || a->base < 0)
            continue;
        if ((a->master[0] ? lj_buf_printf(out, "%s{master=\"%s\"} %lld\n", name, a->master,
                                          base ? a->base : a->current)
                          : lj_buf_printf(out, "%s %lld\n", name, base ? a->base : a->current)) != 0)
            return LJ_ENOMEM;
    }
    return 0;
}

static int render_aof(const ledger *l, lj_buf *out)
{
    return render_aof_family(l, out, 0) || render_aof_family(l, out, 1) ? LJ_ENOMEM : 0;
}

/* ljwx_stream_shard_entries: each shard's last complete reading, with a
 * shard label (the sum stays ljwx_stream_entries, so sum() over either
 * family counts each entry once). Sharded streams only. */
static int render_shards(const ledger *l, lj_buf *out)
{
    size_t i;
    int t;

    if (!l->tagged)
        return 0;
    if (lj_buf_puts(out, "# HELP ljwx_stream_shard_entries Entries of each stream shard by what "
                         "became of them (their sum: ljwx_stream_entries).\n"
                         "# TYPE ljwx_stream_shard_entries gauge\n") != 0)
        return LJ_ENOMEM;
    for (i = 0; i < (size_t)STREAM_KINDS * l->nshards; i++) {
        const figures *f = &l->last[i];

        if (!f->groups_ok || !f->counts_ok)
            continue;
        for (t = 0; t < T_N; t++)
            if (lj_buf_printf(out, "ljwx_stream_shard_entries{stream=\"%s\",shard=\"%zu\","
                                   "state=\"%s\"} %lld\n",
                              l->names[i / l->nshards], i % l->nshards, term_names[t],
                              f->v[t]) != 0)
                return LJ_ENOMEM;
    }
    return 0;
}

int ledger_render_prometheus(const ledger *l, lj_buf *out)
{
    int k;
    int t;

    if (lj_buf_puts(out, "# HELP ljwx_stream_entries Entries of each stream by what became of "
                         "them: accepted = the sum of the others (docs/reliability.md).\n"
                         "# TYPE ljwx_stream_entries gauge\n") != 0)
        return LJ_ENOMEM;
    for (k = 0; k < STREAM_KINDS; k++) {
        if (!l->shown[k].groups_ok)
            continue;
        for (t = 0; t < T_N; t++)
            if (lj_buf_printf(out, "ljwx_stream_entries{stream=\"%s\",state=\"%s\"} %lld\n",
                              l->names[k], term_names[t], l->shown[k].v[t]) != 0)
                return LJ_ENOMEM;
    }
    return render_shards(l, out) || render_aof(l, out) ? LJ_ENOMEM : 0;
}
