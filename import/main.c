/* ljwx-import -- back-fills a CSV export of the old service's monthly tables
 * (t_user_health_data_YYYYMM) through the store path (docs/migration-import.md).
 *
 * Each data line becomes one upload record (the header's column names map to
 * the upload API's keys, see 'columns'), validated exactly as an upload is
 * (rec_parse_body), and every --import-batch valid records are stored with
 * store_health_batch() in one transaction, upload_method 'import': enriched
 * from today's sys_user bindings, deduplicated on (device_sn, ts) -- a second
 * run stores nothing and counts duplicates -- and in the monthly partition of
 * each reading. Alerts are recorded with status IMPORTED and not published
 * (no Redis: notifiers never hear of last year's readings).
 *
 * A bad line is reported on stderr with its line number and skipped; it
 * never reaches the database. Output, last line on stdout:
 *     import: lines=N stored=N duplicates=N rejected=N unbound=N alerts=N
 * Exit: 0 every line stored or already there; 1 some lines rejected; 2 bad
 * usage, unreadable file or header; 3 PostgreSQL failed (batches committed
 * so far stay; running again is safe).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "config.h"
#include "csv.h"
#include "enrich.h"
#include "err.h"
#include "log.h"
#include "partition.h"
#include "pg.h"
#include "record.h"
#include "store.h"

#define MAX_REPORTED 1000   /* rejected lines reported one by one */

/* The accepted header: old column names (snake_case) and the upload API's
 * spellings, to the record key the validation reads. key NULL: a known old
 * column that is not imported ("id" is the old row number, not a device;
 * owners are looked up again; create_time is now). */
typedef struct column {
    const char *name;
    const char *key;
} column;

static const column columns[] = {
    {"device_sn", "device_sn"}, {"deviceSn", "device_sn"},
    {"timestamp", "timestamp"},
    {"heart_rate", "heart_rate"}, {"heartRate", "heart_rate"},
    {"blood_oxygen", "blood_oxygen"}, {"bloodOxygen", "blood_oxygen"},
    {"body_temperature", "body_temperature"}, {"temperature", "body_temperature"},
    {"pressure_high", "pressureHigh"}, {"pressureHigh", "pressureHigh"},
    {"blood_pressure_systolic", "pressureHigh"},
    {"pressure_low", "pressureLow"}, {"pressureLow", "pressureLow"},
    {"blood_pressure_diastolic", "pressureLow"},
    {"stress", "stress"}, {"step", "step"}, {"distance", "distance"}, {"calorie", "calorie"},
    {"latitude", "latitude"}, {"longitude", "longitude"}, {"altitude", "altitude"},
    {"sleep", "sleep"}, {"sleep_data", "sleep"}, {"sleepData", "sleep"},
    {"upload_method", "uploadMethod"}, {"uploadMethod", "uploadMethod"},
    {"source_method", "uploadMethod"},
    {"batch_id", "batchId"}, {"batchId", "batchId"},
    {"id", NULL}, {"user_id", NULL}, {"customer_id", NULL}, {"org_id", NULL},
    {"create_time", NULL}, {"update_time", NULL}, {"is_deleted", NULL}, {"stream_id", NULL},
};
#define NCOLUMNS (sizeof(columns) / sizeof(columns[0]))

typedef struct header {
    size_t n;
    const char *key[CSV_MAX_FIELDS];    /* per CSV column; NULL: not imported */
    int device;                         /* column of device_sn, timestamp, batchId; -1 */
    int time;
    int batch;
} header;

typedef struct counts {
    size_t lines;
    size_t stored;
    size_t duplicates;
    size_t rejected;
    size_t unbound;
    size_t alerts;
} counts;

/* Valid records waiting for the next transaction, with their batch ids. */
typedef struct pending {
    rec_health *recs;
    char (*batch)[REC_BATCH_ID_MAX + 1];
    size_t n;
    size_t cap;
} pending;

typedef struct importer {
    const lj_config *cfg;
    PGconn *pg;
    enrich_cache *owners;
    csv_reader *csv;
    header h;
    pending p;
    counts c;
    rec_opts opts;
    lj_buf json;
} importer;

static void reject(importer *im, size_t line, const char *why)
{
    if (im->c.rejected++ < MAX_REPORTED)
        fprintf(stderr, "import: line %zu: %s\n", line, why);
    else if (im->c.rejected == MAX_REPORTED + 1)
        fprintf(stderr, "import: more rejected lines; only the first %d are listed\n",
                MAX_REPORTED);
}

static const column *find_column(const char *name)
{
    size_t i;

    for (i = 0; i < NCOLUMNS; i++)
        if (strcmp(columns[i].name, name) == 0)
            return &columns[i];
    return NULL;
}

/* The header line: every column known or ignored (with a note), no record
 * key named twice, device and time present. 0, or -1 (reported). */
static int read_header(importer *im)
{
    csv_reader *r = im->csv;
    header *h = &im->h;
    char err[128];
    size_t i;
    size_t j;
    int rc = csv_next(r, err, sizeof(err));

    if (rc != 1) {
        fprintf(stderr, "import: header: %s\n", rc == 0 ? "empty input" : err);
        return -1;
    }
    h->n = csv_nfields(r);
    h->device = h->time = h->batch = -1;
    for (i = 0; i < h->n; i++) {
        const char *name = csv_field(r, i);
        const column *col;

        if (i == 0 && strncmp(name, "\xef\xbb\xbf", 3) == 0)
            name += 3;      /* a byte order mark from a spreadsheet */
        if ((col = find_column(name)) == NULL) {
            fprintf(stderr, "import: header: column '%.64s' is not imported\n", name);
            h->key[i] = NULL;
            continue;
        }
        h->key[i] = col->key;
        for (j = 0; col->key && j < i; j++)
            if (h->key[j] && strcmp(h->key[j], col->key) == 0) {
                fprintf(stderr, "import: header: columns %zu and %zu name the same field (%s)\n",
                        j + 1, i + 1, col->key);
                return -1;
            }
        if (col->key && strcmp(col->key, "device_sn") == 0)
            h->device = (int)i;
        else if (col->key && strcmp(col->key, "timestamp") == 0)
            h->time = (int)i;
        else if (col->key && strcmp(col->key, "batchId") == 0)
            h->batch = (int)i;
    }
    if (h->device < 0 || h->time < 0) {
        fprintf(stderr, "import: header must name the device (device_sn or deviceSn) and the "
                        "reading time (timestamp)\n");
        return -1;
    }
    return 0;
}

/* The line as one upload record: {"key":"value",...}, empty cells left out. */
static int line_json(importer *im)
{
    const csv_reader *r = im->csv;
    lj_buf *b = &im->json;
    size_t i;
    int first = 1;

    lj_buf_reset(b);
    if (lj_buf_puts(b, "{") != 0)
        return LJ_ENOMEM;
    for (i = 0; i < im->h.n; i++) {
        const char *v = csv_field(r, i);

        if (im->h.key[i] == NULL || (int)i == im->h.batch || v[0] == '\0')
            continue;
        if ((!first && lj_buf_puts(b, ",") != 0) ||
            lj_buf_json_str(b, im->h.key[i], strlen(im->h.key[i])) != 0 ||
            lj_buf_puts(b, ":") != 0 || lj_buf_json_str(b, v, strlen(v)) != 0)
            return LJ_ENOMEM;
        first = 0;
    }
    return lj_buf_puts(b, "}");
}

static int pending_push(pending *p, const rec_health *r, const char *batch)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 256;
        rec_health *recs = realloc(p->recs, cap * sizeof(*recs));
        char(*ids)[REC_BATCH_ID_MAX + 1];

        if (recs == NULL)
            return LJ_ENOMEM;
        p->recs = recs;
        if ((ids = realloc(p->batch, cap * sizeof(*ids))) == NULL)
            return LJ_ENOMEM;
        p->batch = ids;
        p->cap = cap;
    }
    p->recs[p->n] = *r;
    snprintf(p->batch[p->n], sizeof(p->batch[0]), "%s", batch);
    p->n++;
    return 0;
}

static void pending_clear(pending *p)
{
    size_t i;

    for (i = 0; i < p->n; i++)
        free(p->recs[i].sleep);
    p->n = 0;
}

/* Validates the current line as an upload record would be; a valid one
 * joins 'pending' (its sleep text moves with it). 0, or LJ_ENOMEM. */
static int take_line(importer *im)
{
    const csv_reader *r = im->csv;
    const char *batch = im->h.batch >= 0 ? csv_field(r, (size_t)im->h.batch) : "";
    const char *msg;
    char why[160];
    rec_batch one;
    int rc;

    if (csv_nfields(r) != im->h.n) {
        snprintf(why, sizeof(why), "has %zu columns, the header has %zu columns",
                 csv_nfields(r), im->h.n);
        reject(im, r->rec_line, why);
        return 0;
    }
    if (csv_field(r, (size_t)im->h.time)[0] == '\0') {
        reject(im, r->rec_line, "timestamp is required (a reading time; the import time "
                                "would be wrong)");
        return 0;
    }
    if (strlen(batch) > REC_BATCH_ID_MAX || !(batch[0] == '\0' || rec_is_token(batch, 64))) {
        reject(im, r->rec_line, "batch_id must be at most 64 printable characters, no spaces");
        return 0;
    }
    if ((rc = line_json(im)) != 0)
        return rc;
    rec_batch_init(&one);
    rc = rec_parse_body(im->json.data, im->json.len, &im->opts, &one, &msg);
    if (rc == 0 && one.n == 1) {
        rc = pending_push(&im->p, &one.recs[0], batch);
        if (rc == 0)
            one.n = 0;  /* the record (and its sleep text) moved to 'pending' */
    } else if (rc == 0) {
        reject(im, r->rec_line, one.nerr ? one.errs[0].reason : "not a record");
    } else if (rc != LJ_ENOMEM) {
        reject(im, r->rec_line, msg ? msg : lj_strerror(rc));
        rc = 0;
    }
    rec_batch_cleanup(&one);
    return rc;
}

/* Stores the pending records in one transaction: one store item per run of
 * lines with the same batch id. 0, or the store's error. */
static int flush(importer *im)
{
    pending *p = &im->p;
    store_item *items;
    store_stats st;
    size_t n = 0;
    size_t i;
    int rc;

    if (p->n == 0)
        return 0;
    if ((items = calloc(p->n, sizeof(*items))) == NULL)
        return LJ_ENOMEM;
    for (i = 0; i < p->n; i++) {
        if (i == 0 || strcmp(p->batch[i], p->batch[i - 1]) != 0) {
            items[n].recs = &p->recs[i];
            items[n].stream_id = NULL;
            items[n].shard = -1;
            items[n].batch_id = p->batch[i][0] ? p->batch[i] : NULL;
            n++;
        }
        items[n - 1].n++;
    }
    rc = store_health_batch(im->pg, im->owners, items, n, STORE_UPLOAD_IMPORT, &st);
    if (rc == 0) {
        im->c.stored += st.inserted;
        im->c.duplicates += st.duplicates;
        im->c.unbound += st.unbound;
        im->c.alerts += st.nalerts;
        store_stats_cleanup(&st);
    }
    free(items);
    pending_clear(p);
    return rc;
}

/* Reads every line, storing each full batch. 0, 2 (input), 3 (database). */
static int run(importer *im)
{
    char err[128];
    int rc;

    if (read_header(im) != 0)
        return 2;
    for (;;) {
        rc = csv_next(im->csv, err, sizeof(err));
        if (rc == 0)
            break;
        if (rc == LJ_EIO) {
            fprintf(stderr, "import: read error after line %zu\n", im->csv->line);
            return 2;
        }
        im->c.lines++;
        if (rc == LJ_EPARSE)
            reject(im, im->csv->rec_line, err);
        else if ((rc = take_line(im)) != 0)
            goto db_failed;     /* out of memory: nothing of this batch stored */
        if (im->p.n >= (size_t)im->cfg->import_batch && (rc = flush(im)) != 0)
            goto db_failed;
    }
    if ((rc = flush(im)) != 0)
        goto db_failed;
    return 0;
db_failed:
    fprintf(stderr, "import: storing the lines before line %zu failed (%s); the batches "
                    "before it are stored, running the import again is safe\n",
            im->csv->line + 1, lj_strerror(rc));
    return 3;
}

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int main(int argc, char **argv)
{
    static csv_reader csv;      /* 64 KiB: not on the stack */
    importer im;
    lj_config cfg;
    char err[256];
    FILE *in = stdin;
    int rc;

    rc = cfg_load(&cfg, CFG_IMPORT, argc, argv, err, sizeof(err));
    if (rc == 1) {
        cfg_print_help(stdout, CFG_IMPORT, "ljwx-import");
        return 0;
    }
    if (rc != 0) {
        fprintf(stderr, "ljwx-import: %s\n", err);
        return 2;
    }
    log_init("import", log_level_parse(cfg.log_level) < 0 ? LOG_INFO
                                                           : log_level_parse(cfg.log_level));
    if (strcmp(cfg.import_file, "-") != 0 && (in = fopen(cfg.import_file, "rb")) == NULL) {
        fprintf(stderr, "import: cannot open %s: %m\n", cfg.import_file);
        return 2;
    }
    memset(&im, 0, sizeof(im));
    im.cfg = &cfg;
    im.csv = &csv;
    im.opts.max_records = 1;
    im.opts.max_depth = 4;
    im.opts.tz_offset_min = cfg.tz_offset_min;
    im.opts.now_ms = now_ms();
    lj_buf_init(&im.json);
    csv_init(&csv, in);
    pg_init(&cfg);
    part_window_any();  /* an operator's back-fill: any month gets its partition */
    rc = 3;
    if ((im.pg = pg_connect(cfg.pg_dsn, "ljwx-import", err, sizeof(err))) == NULL) {
        fprintf(stderr, "import: PostgreSQL: %s\n", err);
        goto out;
    }
    if (store_prepare(im.pg) != 0 ||
        (im.owners = enrich_new(65536, cfg.enrich_ttl_ms)) == NULL) {
        fprintf(stderr, "import: PostgreSQL: cannot prepare the session\n");
        goto out;
    }
    rc = run(&im);
    if (rc == 0 && im.c.rejected > 0)
        rc = 1;
    printf("import: lines=%zu stored=%zu duplicates=%zu rejected=%zu unbound=%zu alerts=%zu\n",
           im.c.lines, im.c.stored, im.c.duplicates, im.c.rejected, im.c.unbound, im.c.alerts);
out:
    pending_clear(&im.p);
    free(im.p.recs);
    free(im.p.batch);
    lj_buf_cleanup(&im.json);
    if (im.owners)
        enrich_free(im.owners);
    if (im.pg)
        PQfinish(im.pg);
    if (in != stdin)
        fclose(in);
    return rc;
}
