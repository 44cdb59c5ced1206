/* text.h -- the notifier's pure text logic: escaping for the channels'
 * bodies, the SMS template, Retry-After, backoff and the host of a URL.
 *
 * No I/O, no globals: any thread. Every function appends to or writes a
 * buffer the caller owns; unit-tested in tests/unit/test_notify_text.c.
 */
#ifndef LJ_NOTIFIER_TEXT_H
#define LJ_NOTIFIER_TEXT_H

#include <stddef.h>
#include <time.h>

#include "buf.h"

/* How the values of a template's placeholders are written. */
typedef enum text_escape {
    TEXT_ESC_JSON = 0,  /* each value a quoted JSON string: "content": {text} */
    TEXT_ESC_FORM       /* application/x-www-form-urlencoded: msg={text} */
} text_escape;

/* One placeholder: {name} in a template is replaced by 'value'. */
typedef struct text_var {
    const char *name;
    const char *value;
} text_var;

/* Appends 's' to 'out' for markdown (WeChat Work, DingTalk), for use after
 * a label on a line (never at a line's start): the characters that mean
 * something there (\ ` * _ [ ] < > | ~: emphasis, code, links, HTML such
 * as WeChat's <font>, tables) get a backslash; line breaks and other
 * control bytes become a space, so a device serial or a name cannot add
 * headings, links or lines. 0 or LJ_ENOMEM. */
int text_markdown_escape(lj_buf *out, const char *s);

/* Appends 's' percent-encoded (RFC 3986 unreserved bytes kept, space as
 * %20). 0 or LJ_ENOMEM. */
int text_form_escape(lj_buf *out, const char *s);

/* Appends 'tmpl' with each placeholder -- '{', lower-case letters and '_',
 * '}' -- replaced by the value of that name in 'vars' ('n' of them),
 * escaped as 'esc' says. Any other '{' is literal, so a JSON template's own
 * braces need no escaping. 0; LJ_EINVAL with a static reason in '*err' for
 * a placeholder 'vars' does not name (nothing useful is left in 'out'
 * then); LJ_ENOMEM. A NULL value is "". */
int text_expand(lj_buf *out, const char *tmpl, const text_var *vars, size_t n, text_escape esc,
                const char **err);

/* Parses a Retry-After header value: delta-seconds ("120") or an
 * IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"), relative to 'now'.
 * Leading and trailing blanks are ignored. Returns 0 with '*seconds' set
 * (0 for a date in the past, at most 86400), or LJ_EINVAL when it is
 * neither (the caller then uses its own backoff). */
int text_retry_after(const char *value, time_t now, int *seconds);

/* Milliseconds to wait before attempt 'attempt' + 1, after 'attempt'
 * (>= 1) failed: 'base_ms' doubled per attempt, at most 'max_ms'; a server's
 * 'retry_after_s' (-1: none) wins when longer, up to an hour. 'jitter' in
 * [0, 1) adds up to a tenth more (spreads retries of many notifiers). */
long text_backoff_ms(int attempt, int base_ms, int max_ms, int retry_after_s, double jitter);

/* Writes the host (and port) of 'url' into 'out': what may be logged of a
 * URL whose path or query carries a key. Userinfo is dropped. "?" when
 * 'url' has no "scheme://". Never fails; truncates to 'outlen'. */
void text_url_host(const char *url, char *out, size_t outlen);

/* Splits the comma-separated 'list' into at most 'max' trimmed, non-empty
 * items, each copied (NUL-terminated, at most 'itemlen' - 1 bytes) into
 * 'items' + i * 'itemlen'. Returns the number of items, or LJ_ETOOBIG when
 * there are more than 'max' or one is too long. */
int text_split_list(const char *list, char *items, size_t itemlen, int max);

#endif
