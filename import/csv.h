/* csv.h -- a bounded RFC 4180 reader for scripts/import.
 *
 * Reads one record at a time from a FILE: fields separated by ',', records
 * by LF or CRLF; a field may be quoted ("a, ""b"""), and a quoted field may
 * span lines. Blank lines are skipped. Every record is bounded (CSV_MAX_BYTES
 * bytes, CSV_MAX_FIELDS fields): the input is untrusted.
 *
 * A bad record (a quote inside an unquoted field, text after a closing
 * quote, a NUL byte, too long, too many fields, an unterminated quote) is
 * reported with the number of the line it starts on, and skipped to the end
 * of that line, so the next record can still be read.
 *
 * No globals; one reader per FILE.
 */
#ifndef LJ_IMPORT_CSV_H
#define LJ_IMPORT_CSV_H

#include <stddef.h>
#include <stdio.h>

#define CSV_MAX_BYTES (64 * 1024)
#define CSV_MAX_FIELDS 64

typedef struct csv_reader {
    FILE *in;
    size_t line;        /* lines consumed so far */
    size_t rec_line;    /* line the last record started on (1-based) */
    char buf[CSV_MAX_BYTES + 1];
    size_t len;
    size_t nfields;
    size_t start[CSV_MAX_FIELDS];   /* offsets into buf; each field NUL-terminated */
} csv_reader;

void csv_init(csv_reader *r, FILE *in);

/* Reads the next record. 1: a record (csv_field(), csv_nfields()); 0: end
 * of input; LJ_EPARSE: a bad record, 'err' says why, it was skipped;
 * LJ_EIO: a read error. rec_line is set in every case but the end. */
int csv_next(csv_reader *r, char *err, size_t errlen);

static inline size_t csv_nfields(const csv_reader *r)
{
    return r->nfields;
}

static inline const char *csv_field(const csv_reader *r, size_t i)
{
    return r->buf + r->start[i];
}

#endif
