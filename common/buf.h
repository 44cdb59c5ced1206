/* buf.h -- a growable byte buffer.
 *
 * Used for HTTP responses, JSON payloads and COPY data. The buffer owns its
 * bytes; 'data' is always NUL-terminated (when 'cap' > 0) so it can be passed
 * to C string APIs. Not thread-safe: one owner at a time.
 */
#ifndef LJ_COMMON_BUF_H
#define LJ_COMMON_BUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct lj_buf {
    char *data;
    size_t len;
    size_t cap;
} lj_buf;

void lj_buf_init(lj_buf *b);
/* Frees the bytes; 'b' may be reused after lj_buf_init(). */
void lj_buf_cleanup(lj_buf *b);
/* Keeps the allocation, drops the contents. */
void lj_buf_reset(lj_buf *b);
/* Makes room for 'extra' more bytes (plus the terminating NUL). 0 or LJ_ENOMEM. */
int lj_buf_reserve(lj_buf *b, size_t extra);
int lj_buf_append(lj_buf *b, const void *p, size_t n);
int lj_buf_puts(lj_buf *b, const char *s);
int lj_buf_printf(lj_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Appends the decimal form of 'v' (no printf: this is on every record's path). */
int lj_buf_int(lj_buf *b, long long v);
/* Appends 's' ('n' bytes, assumed UTF-8) as a quoted JSON string. */
int lj_buf_json_str(lj_buf *b, const char *s, size_t n);
/* Takes the bytes out of 'b' (caller frees them); 'b' is left empty. */
char *lj_buf_take(lj_buf *b, size_t *len);

#endif
