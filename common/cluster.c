#include "cluster.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint16_t cluster_crc16(const char *buf, size_t len)
{
    uint16_t crc = 0;
    size_t i;
    int b;

    for (i = 0; i < len; i++) {
        crc ^= (uint16_t)((unsigned char)buf[i] << 8);
        for (b = 0; b < 8; b++)
            crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

unsigned cluster_key_slot(const char *key, size_t len)
{
    const char *open = memchr(key, '{', len);

    if (open) {
        size_t rest = len - (size_t)(open - key) - 1;
        const char *close = memchr(open + 1, '}', rest);

        if (close && close > open + 1)
            return cluster_crc16(open + 1, (size_t)(close - open - 1)) & (CLUSTER_SLOTS - 1);
    }
    return cluster_crc16(key, len) & (CLUSTER_SLOTS - 1);
}

/* A decimal in [lo, hi] made of all 'len' bytes of 's', or -1. */
static long parse_num(const char *s, size_t len, long lo, long hi)
{
    long v = 0;
    size_t i;

    if (len == 0 || len > 6)
        return -1;
    for (i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v < lo || v > hi ? -1 : v;
}

int cluster_addr_parse(const char *s, size_t len, cluster_addr *out)
{
    const char *colon = NULL;
    size_t i, hostlen;
    long port;

    for (i = 0; i < len; i++)
        if (s[i] == ':')
            colon = s + i;
    if (colon == NULL)
        return -1;
    hostlen = (size_t)(colon - s);
    port = parse_num(colon + 1, len - hostlen - 1, 1, 65535);
    if (hostlen == 0 || hostlen >= sizeof(out->host) || port < 0)
        return -1;
    memcpy(out->host, s, hostlen);
    out->host[hostlen] = '\0';
    out->port = (int)port;
    return 0;
}

int cluster_seeds_parse(const char *list, cluster_addr *out, int max)
{
    int n = 0;
    const char *p = list;

    if (list == NULL || *list == '\0')
        return -1;
    for (;;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);

        if (n == max || cluster_addr_parse(p, len, &out[n]) != 0)
            return -1;
        n++;
        if (end == NULL)
            return n;
        p = end + 1;
    }
}

/* "<slot> <host>:<port>" after a MOVED or ASK. */
static int parse_target(const char *s, size_t len, cluster_redirect *out)
{
    const char *sp = memchr(s, ' ', len);
    long slot;

    if (sp == NULL)
        return -1;
    slot = parse_num(s, (size_t)(sp - s), 0, CLUSTER_SLOTS - 1);
    if (slot < 0)
        return -1;
    out->slot = (unsigned)slot;
    return cluster_addr_parse(sp + 1, len - (size_t)(sp - s) - 1, &out->to);
}

static int starts(const char *s, size_t len, const char *word)
{
    size_t n = strlen(word);

    return len >= n && memcmp(s, word, n) == 0 && (len == n || s[n] == ' ');
}

cluster_redirect_kind cluster_redirect_parse(const char *err, size_t len, cluster_redirect *out)
{
    memset(out, 0, sizeof(*out));
    if (starts(err, len, "TRYAGAIN") || starts(err, len, "CLUSTERDOWN"))
        out->kind = CLUSTER_RETRY;
    else if (starts(err, len, "MOVED") && parse_target(err + 6, len - 6, out) == 0)
        out->kind = CLUSTER_MOVED;
    else if (starts(err, len, "ASK") && parse_target(err + 4, len - 4, out) == 0)
        out->kind = CLUSTER_ASK;
    else
        memset(out, 0, sizeof(*out));
    return out->kind;
}

int cluster_map_node(cluster_map *m, const cluster_addr *a)
{
    int i;

    for (i = 0; i < m->nnodes; i++)
        if (m->nodes[i].port == a->port && strcmp(m->nodes[i].host, a->host) == 0)
            return i;
    if (m->nnodes == CLUSTER_NODES_MAX)
        return -1;
    m->nodes[m->nnodes] = *a;
    return m->nnodes++;
}

/* The master of one CLUSTER SLOTS range: [host, port, id, ...]. */
static int range_master(cluster_map *m, const redisReply *node, const cluster_addr *self)
{
    cluster_addr a;
    const redisReply *h, *p;

    if (node->type != REDIS_REPLY_ARRAY || node->elements < 2)
        return -1;
    h = node->element[0];
    p = node->element[1];
    if (h->type != REDIS_REPLY_STRING || p->type != REDIS_REPLY_INTEGER || p->integer < 1 ||
        p->integer > 65535 || h->len >= sizeof(a.host))
        return -1;
    if (h->len == 0 && self == NULL)
        return -1;
    snprintf(a.host, sizeof(a.host), "%.*s", (int)(h->len ? h->len : strlen(self->host)),
             h->len ? h->str : self->host);
    a.port = (int)p->integer;
    return cluster_map_node(m, &a);
}

int cluster_map_from_slots(cluster_map *m, const redisReply *r, const cluster_addr *self)
{
    size_t i;
    long long s;

    m->nnodes = 0;
    for (s = 0; s < CLUSTER_SLOTS; s++)
        m->slot_node[s] = -1;
    if (r == NULL || r->type != REDIS_REPLY_ARRAY)
        return -1;
    for (i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        int node;

        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
            e->element[0]->type != REDIS_REPLY_INTEGER ||
            e->element[1]->type != REDIS_REPLY_INTEGER)
            return -1;
        if (e->element[0]->integer < 0 || e->element[1]->integer >= CLUSTER_SLOTS ||
            e->element[0]->integer > e->element[1]->integer)
            return -1;
        if ((node = range_master(m, e->element[2], self)) < 0)
            return -1;
        for (s = e->element[0]->integer; s <= e->element[1]->integer; s++)
            m->slot_node[s] = (int16_t)node;
    }
    return 0;
}

unsigned cluster_map_uncovered(const cluster_map *m)
{
    unsigned n = 0, s;

    for (s = 0; s < CLUSTER_SLOTS; s++)
        n += m->slot_node[s] < 0;
    return n;
}
