/* cluster.h -- Redis Cluster routing: key slots, the slot map, redirects.
 *
 * Debian 12 has no cluster-capable C client (hiredis 0.14), so the routing
 * is ours, after the Redis Cluster specification:
 *   - a key's slot is CRC16 (XMODEM) of the key, or of its hash tag (the
 *     bytes between the first '{' and the first '}' after it, when there
 *     are any), modulo 16384;
 *   - the slot map comes from CLUSTER SLOTS: ranges of slots, each with its
 *     master first, then its replicas;
 *   - a command sent to the wrong node fails with "MOVED <slot> <host>:<port>"
 *     (the slot lives there now: refresh the map) or "ASK <slot>
 *     <host>:<port>" (this one command goes there, preceded by ASKING; the
 *     map is unchanged); "TRYAGAIN" and "CLUSTERDOWN" are retried later.
 * Pure functions and plain data: no I/O here. The connections that use them
 * are the callers'.
 */
#ifndef LJ_COMMON_CLUSTER_H
#define LJ_COMMON_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#define CLUSTER_SLOTS 16384
#define CLUSTER_NODES_MAX 64
#define CLUSTER_HOST_MAX 64

/* The slot of the 'len' bytes of 'key', hash tags honoured. */
unsigned cluster_key_slot(const char *key, size_t len);

/* CRC16-CCITT (XMODEM: polynomial 0x1021, initial 0) of 'len' bytes. */
uint16_t cluster_crc16(const char *buf, size_t len);

typedef struct cluster_addr {
    char host[CLUSTER_HOST_MAX];
    int port;
} cluster_addr;

/* Parses "host:port" (the last ':' separates, so an IPv6 address without
 * brackets parses too). 0, or -1 when it does not parse or the host does
 * not fit. */
int cluster_addr_parse(const char *s, size_t len, cluster_addr *out);

/* Parses a comma-separated list of seeds ("h1:p1,h2:p2") into at most 'max'
 * addresses. The count (>= 1), or -1 on an empty list, a bad item or too
 * many items. */
int cluster_seeds_parse(const char *list, cluster_addr *out, int max);

typedef enum cluster_redirect_kind {
    CLUSTER_NO_REDIRECT = 0,
    CLUSTER_MOVED,      /* the slot moved: refresh the map, resend */
    CLUSTER_ASK,        /* resend this command only, after ASKING, there */
    CLUSTER_RETRY,      /* TRYAGAIN or CLUSTERDOWN: back off, resend */
} cluster_redirect_kind;

typedef struct cluster_redirect {
    cluster_redirect_kind kind;
    unsigned slot;          /* MOVED and ASK */
    cluster_addr to;        /* MOVED and ASK */
} cluster_redirect;

/* What the error reply text 'err' ('len' bytes, as hiredis gives it: no
 * leading '-') asks for. An error that is not a redirect, or a MOVED/ASK
 * that does not parse, is CLUSTER_NO_REDIRECT: the caller treats it as the
 * command's own error. */
cluster_redirect_kind cluster_redirect_parse(const char *err, size_t len, cluster_redirect *out);

/* Which master serves each slot. Node 0 .. nnodes-1 are the masters found;
 * slot_node[s] is the index of the master of slot s, or -1 when no master
 * serves it (the cluster is not fully covered). */
typedef struct cluster_map {
    int nnodes;
    cluster_addr nodes[CLUSTER_NODES_MAX];
    int16_t slot_node[CLUSTER_SLOTS];
} cluster_map;

/* Builds 'm' from a CLUSTER SLOTS reply: an array of [start, end, [host,
 * port, id...], replicas...]. An empty host (the node that answered, which
 * does not know its own address) becomes the host of 'self'
 * (the node asked), with the port the reply gives. 0, or -1 when the reply
 * has not that shape, a range is out of bounds or there are more than
 * CLUSTER_NODES_MAX masters ('m' is then unspecified). */
int cluster_map_from_slots(cluster_map *m, const redisReply *r, const cluster_addr *self);

/* The index in 'm' of 'a', adding it when it is new (a MOVED can name a
 * master the map does not know yet). The index, or -1 when 'm' is full. */
int cluster_map_node(cluster_map *m, const cluster_addr *a);

/* Slots without a master in 'm'. */
unsigned cluster_map_uncovered(const cluster_map *m);

#endif
