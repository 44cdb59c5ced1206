/* post.h -- one HTTP(S) POST of a delivery, with libcurl.
 *
 * A post_client is one libcurl easy handle (its connections are kept alive
 * between deliveries to the same host). One per delivery thread; never
 * shared. curl_global_init() must have run once before post_client_new()
 * (main.c). Every call is bounded: connect (with TLS) by the connect
 * timeout, the whole request by the timeout; TLS peer and host are always
 * verified; only http and https; no redirect is followed; the reply body is
 * read up to POST_REPLY_MAX bytes; no signals (NOSIGNAL).
 */
#ifndef LJ_NOTIFIER_POST_H
#define LJ_NOTIFIER_POST_H

#include <stddef.h>

#define POST_REPLY_MAX 8192

/* What came back. 'status' 0: no HTTP answer (see 'error'). */
typedef struct post_reply {
    long status;
    char body[POST_REPLY_MAX + 1];  /* NUL-terminated */
    size_t body_len;
    int truncated;                  /* the body was longer: reading stopped */
    int retry_after_s;              /* -1: no (parsable) Retry-After */
    char error[128];                /* libcurl's generic text (never the URL) */
} post_reply;

typedef struct post_client post_client;

/* A client whose calls take at most 'timeout_ms' ('connect_timeout_ms' for
 * resolve + connect + handshake). NULL on out of memory. */
post_client *post_client_new(int timeout_ms, int connect_timeout_ms);

/* Frees 'c' and closes its connections (NULL: no-op). */
void post_client_free(post_client *c);

/* POSTs the 'len' bytes 'body' to 'url' with 'content_type' and, when
 * 'idempotency_key' is not NULL, an Idempotency-Key header. Fills '*r'.
 * Returns 0 when an HTTP answer came (any status; a body cut at
 * POST_REPLY_MAX too), LJ_EIO when none did (refused, timeout, TLS error:
 * r->error says which), LJ_ENOMEM. */
int post_send(post_client *c, const char *url, const char *content_type,
              const char *idempotency_key, const char *body, size_t len, post_reply *r);

#endif
