/* rds.h -- small synchronous hiredis helpers (consumer workers, scripts).
 *
 * Blocking calls on a redisContext owned by one thread. A context whose
 * 'err' is set is dead: the caller frees it and reconnects with backoff.
 * Commands are always built with argv (never client data in a format).
 */
#ifndef LJ_COMMON_RDS_H
#define LJ_COMMON_RDS_H

#include <stddef.h>

#include <hiredis/hiredis.h>

/* Connects (and AUTHs when 'password' is not empty). The TCP connect is
 * abandoned after 'connect_ms' (> 0; a host that drops packets would hold it
 * for minutes otherwise), every command after 'timeout_ms' (0: no command
 * timeout). A host name is resolved by this thread, bounded only by the
 * resolver's own timeouts (resolv.conf). Returns the context or NULL with a
 * reason in 'err'. */
redisContext *rds_connect(const char *host, int port, const char *password, int connect_ms,
                          int timeout_ms, char *err, size_t errlen);

/* Runs a command of 'argc' NUL-terminated strings. Returns the reply (caller
 * frees with freeReplyObject) or NULL when the connection failed. */
redisReply *rds_command(redisContext *c, int argc, const char **argv);

/* The value of 'key' in a flat [key, value, key, value, ...] reply (as
 * XINFO returns in RESP2), or NULL. */
const redisReply *rds_map_get(const redisReply *m, const char *key);

/* The integer value of 'key' in such a reply, or -1. */
long long rds_map_int(const redisReply *m, const char *key);

#endif
