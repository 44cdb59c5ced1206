#include "post.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

#include "err.h"
#include "text.h"

struct post_client {
    CURL *curl;
    int timeout_ms;
    int connect_timeout_ms;
};

post_client *post_client_new(int timeout_ms, int connect_timeout_ms)
{
    post_client *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return NULL;
    if ((c->curl = curl_easy_init()) == NULL) {
        free(c);
        return NULL;
    }
    c->timeout_ms = timeout_ms;
    c->connect_timeout_ms = connect_timeout_ms;
    return c;
}

void post_client_free(post_client *c)
{
    if (c == NULL)
        return;
    curl_easy_cleanup(c->curl);
    free(c);
}

/* Keeps the first POST_REPLY_MAX bytes; more stops the transfer. */
static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    post_reply *r = arg;
    size_t len = size * n;

    if (r->body_len + len > POST_REPLY_MAX) {
        r->truncated = 1;
        return 0;
    }
    memcpy(r->body + r->body_len, p, len);
    r->body_len += len;
    r->body[r->body_len] = '\0';
    return len;
}

/* Picks up Retry-After (other headers are passed over). */
static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    static const char name[] = "retry-after:";
    post_reply *r = arg;
    size_t len = size * n;
    char value[64];
    size_t vlen;

    if (len > sizeof(name) - 1 && strncasecmp(p, name, sizeof(name) - 1) == 0) {
        vlen = len - (sizeof(name) - 1);
        if (vlen < sizeof(value)) {
            memcpy(value, p + sizeof(name) - 1, vlen);
            value[vlen] = '\0';
            value[strcspn(value, "\r\n")] = '\0';
            if (text_retry_after(value, time(NULL), &r->retry_after_s) != 0)
                r->retry_after_s = -1;
        }
    }
    return len;
}

/* The options every request gets: bounds, TLS verification, no redirects. */
static int set_safety(CURL *h, const post_client *c)
{
    return curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L) ||
           curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)c->timeout_ms) ||
           curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)c->connect_timeout_ms) ||
           curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https") ||
           curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L) ||
           curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L) ||
           curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L) ||
           curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)POST_REPLY_MAX);
}

int post_send(post_client *c, const char *url, const char *content_type,
              const char *idempotency_key, const char *body, size_t len, post_reply *r)
{
    struct curl_slist *headers = NULL;
    struct curl_slist *more;
    char line[160];
    CURLcode cc;
    CURL *h = c->curl;
    int rc = LJ_ENOMEM;

    memset(r, 0, sizeof(*r));
    r->retry_after_s = -1;
    curl_easy_reset(h);
    snprintf(line, sizeof(line), "Content-Type: %s", content_type);
    if ((headers = curl_slist_append(NULL, line)) == NULL)
        goto out;
    if (idempotency_key) {
        snprintf(line, sizeof(line), "Idempotency-Key: %s", idempotency_key);
        if ((more = curl_slist_append(headers, line)) == NULL)
            goto out;
        headers = more;
    }
    /* No "Expect: 100-continue" round trip before the body. */
    if ((more = curl_slist_append(headers, "Expect:")) == NULL)
        goto out;
    headers = more;
    if (set_safety(h, c) || curl_easy_setopt(h, CURLOPT_URL, url) ||
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers) ||
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body) ||
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len) ||
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body) ||
        curl_easy_setopt(h, CURLOPT_WRITEDATA, r) ||
        curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header) ||
        curl_easy_setopt(h, CURLOPT_HEADERDATA, r) ||
        curl_easy_setopt(h, CURLOPT_USERAGENT, "ljwx-notifier")) {
        snprintf(r->error, sizeof(r->error), "libcurl refused an option");
        rc = LJ_EIO;
        goto out;
    }
    cc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
    /* A reply body over the cap (announced, or counted as it came) still
     * carries the status: an answer, with 'truncated' set. */
    if (cc == CURLE_FILESIZE_EXCEEDED)
        r->truncated = 1;
    if (cc != CURLE_OK && !(r->truncated && r->status != 0)) {
        snprintf(r->error, sizeof(r->error), "%s", curl_easy_strerror(cc));
        r->status = 0;
        rc = LJ_EIO;
        goto out;
    }
    rc = 0;
out:
    curl_slist_free_all(headers);
    return rc;
}
