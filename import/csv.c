#include "csv.h"

#include <string.h>

#include "err.h"

void csv_init(csv_reader *r, FILE *in)
{
    memset(r, 0, sizeof(*r));
    r->in = in;
}

/* Consumes the rest of the current line (after a bad record). */
static void skip_line(csv_reader *r)
{
    int c;

    while ((c = getc(r->in)) != EOF)
        if (c == '\n') {
            r->line++;
            return;
        }
}

static int fail(csv_reader *r, char *err, size_t errlen, const char *why, int skip)
{
    snprintf(err, errlen, "%s", why);
    if (skip)
        skip_line(r);
    return LJ_EPARSE;
}

static int put(csv_reader *r, char c)
{
    if (r->len >= CSV_MAX_BYTES)
        return -1;
    r->buf[r->len++] = c;
    return 0;
}

/* Ends the current field; begins the next one unless 'last'. */
static int end_field(csv_reader *r, int last)
{
    if (put(r, '\0') != 0)
        return -1;
    if (last)
        return 0;
    if (r->nfields >= CSV_MAX_FIELDS)
        return -2;
    r->start[r->nfields++] = r->len;
    return 0;
}

static int field_error(csv_reader *r, int e, char *err, size_t errlen)
{
    return fail(r, err, errlen, e == -2 ? "more than 64 columns" : "record longer than 64 KiB",
                1);
}

/* The first character of a record has been read: 'c'. */
static int read_record(csv_reader *r, int c, char *err, size_t errlen)
{
    int quoted = 0;     /* inside quotes */
    int closed = 0;     /* just after the closing quote of a field */
    int fresh = 1;      /* at the start of a field */
    int e;

    r->len = 0;
    r->nfields = 1;
    r->start[0] = 0;
    for (;; c = getc(r->in)) {
        if (c == EOF) {
            if (ferror(r->in))
                return LJ_EIO;
            if (quoted)
                return fail(r, err, errlen, "unterminated quote", 0);
            break;
        }
        if (c == '\0')
            return fail(r, err, errlen, "NUL byte", 1);
        if (quoted) {
            if (c == '"') {
                int n = getc(r->in);

                if (n == '"') {
                    c = '"';
                } else {
                    if (n != EOF)
                        ungetc(n, r->in);
                    quoted = 0;
                    closed = 1;
                    continue;
                }
            } else if (c == '\n') {
                r->line++;
            }
            if (put(r, (char)c) != 0)
                return field_error(r, -1, err, errlen);
            continue;
        }
        if (c == '\r') {
            int n = getc(r->in);

            if (n == '\n') {
                r->line++;
                break;
            }
            if (n != EOF)
                ungetc(n, r->in);
            return fail(r, err, errlen, "bare CR", 1);
        }
        if (c == '\n') {
            r->line++;
            break;
        }
        if (c == ',') {
            if ((e = end_field(r, 0)) != 0)
                return field_error(r, e, err, errlen);
            fresh = 1;
            closed = 0;
            continue;
        }
        if (closed)
            return fail(r, err, errlen, "text after a closing quote", 1);
        if (c == '"') {
            if (!fresh)
                return fail(r, err, errlen, "quote inside an unquoted field", 1);
            quoted = 1;
            fresh = 0;
            continue;
        }
        fresh = 0;
        if (put(r, (char)c) != 0)
            return field_error(r, -1, err, errlen);
    }
    if ((e = end_field(r, 1)) != 0)
        return field_error(r, e, err, errlen);
    return 1;
}

int csv_next(csv_reader *r, char *err, size_t errlen)
{
    int c;

    for (;;) {
        c = getc(r->in);
        if (c == EOF)
            return ferror(r->in) ? LJ_EIO : 0;
        r->rec_line = r->line + 1;
        if (c == '\n') {
            r->line++;
            continue;   /* blank line */
        }
        if (c == '\r') {
            int n = getc(r->in);

            if (n == '\n') {
                r->line++;
                continue;
            }
            if (n != EOF)
                ungetc(n, r->in);
        }
        return read_record(r, c, err, errlen);
    }
}
