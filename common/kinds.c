#include "kinds.h"

#include <stdlib.h>
#include <string.h>

#include "copyenc.h"
#include "err.h"

static int health_encode(const kind_value *v, lj_buf *out)
{
    return rec_batch_to_json(&v->health, out);
}

static int health_decode(const char *json, size_t len, const char *batch_id, kind_value *out)
{
    rec_batch_init(&out->health);
    if (rec_batch_from_json(json, len, &out->health) != 0 || out->health.n == 0) {
        rec_batch_cleanup(&out->health);
        return LJ_EPARSE;
    }
    if (batch_id && strlen(batch_id) <= REC_BATCH_ID_MAX)
        memcpy(out->health.batch_id, batch_id, strlen(batch_id) + 1);
    return 0;
}

static const char *health_sn(const kind_value *v)
{
    return v->health.n ? v->health.recs[0].device_sn : "";
}

static int health_store(PGconn *pg, enrich_cache *cache, const char *stream, unsigned shard,
                        kind_value *const *v, const char *const *ids, size_t n, store_stats *st)
{
    store_item *items = malloc((n ? n : 1) * sizeof(*items));
    size_t i;
    int rc;

    (void)stream;
    if (items == NULL)
        return LJ_ENOMEM;
    for (i = 0; i < n; i++) {
        items[i].recs = v[i]->health.recs;
        items[i].n = v[i]->health.n;
        items[i].stream_id = ids[i];
        items[i].shard = (int)shard;
        items[i].batch_id = v[i]->health.batch_id[0] ? v[i]->health.batch_id : NULL;
    }
    rc = store_health_batch(pg, cache, items, n, "stream_v2", st);
    free(items);
    return rc;
}

static void health_rehearse(const kind_value *v, const char *id, lj_buf *scratch)
{
    copyenc_meta meta = {"stream_v2", id, 0, NULL};
    size_t j;

    for (j = 0; j < v->health.n; j++) {
        lj_buf_reset(scratch);
        copyenc_health_row(scratch, &v->health.recs[j], NULL, &meta);
    }
}

static void health_cleanup(kind_value *v)
{
    rec_batch_cleanup(&v->health);
}

static int device_parse(const char *body, size_t len, const rec_opts *opts, kind_value *out,
                        const char **msg)
{
    return rep_device_parse(body, len, opts, &out->device, msg);
}

static int device_encode(const kind_value *v, lj_buf *out)
{
    return rep_device_to_json(&v->device, out);
}

static int device_decode(const char *json, size_t len, const char *batch_id, kind_value *out)
{
    (void)batch_id;
    return rep_device_from_json(json, len, &out->device);
}

static const char *device_sn(const kind_value *v)
{
    return v->device.device_sn;
}

static int device_store(PGconn *pg, enrich_cache *cache, const char *stream, unsigned shard,
                        kind_value *const *v, const char *const *ids, size_t n, store_stats *st)
{
    rep_device *d = malloc((n ? n : 1) * sizeof(*d));
    size_t i;
    int rc;

    (void)shard;            /* the history names its stream */
    if (d == NULL)
        return LJ_ENOMEM;
    for (i = 0; i < n; i++)
        d[i] = v[i]->device;    /* shallow: the values keep ownership */
    rc = store_device_batch(pg, cache, stream, d, ids, n, st, NULL);
    free(d);
    return rc;
}

static void device_cleanup(kind_value *v)
{
    rep_device_cleanup(&v->device);
}

static int event_parse(const char *body, size_t len, const rec_opts *opts, kind_value *out,
                       const char **msg)
{
    return rep_event_parse(body, len, opts, &out->event, msg);
}

static int event_encode(const kind_value *v, lj_buf *out)
{
    return rep_event_to_json(&v->event, out);
}

static int event_decode(const char *json, size_t len, const char *batch_id, kind_value *out)
{
    (void)batch_id;
    return rep_event_from_json(json, len, &out->event);
}

static const char *event_sn(const kind_value *v)
{
    return v->event.device_sn;
}

static int event_store(PGconn *pg, enrich_cache *cache, const char *stream, unsigned shard,
                       kind_value *const *v, const char *const *ids, size_t n, store_stats *st)
{
    rep_event *ev = malloc((n ? n : 1) * sizeof(*ev));
    size_t i;
    int rc;

    (void)stream;
    (void)shard;
    if (ev == NULL)
        return LJ_ENOMEM;
    for (i = 0; i < n; i++)
        ev[i] = v[i]->event;
    rc = store_event_batch(pg, cache, ev, ids, n, st, NULL);
    free(ev);
    return rc;
}

static void event_cleanup(kind_value *v)
{
    rep_event_cleanup(&v->event);
}

static const kind_ops kinds[STREAM_KINDS] = {
    [STREAM_HEALTH] = {"health", "health_data_stream", "health_processors", "health_data",
                       "health data", "payload is not a normalised record list", 1, NULL,
                       health_encode, health_decode, health_sn, health_store, health_rehearse, store_prepare,
                       health_cleanup},
    [STREAM_DEVICE] = {"device", "device_info_stream", "device_processors", "device_info",
                       "device info", "payload is not a normalised device report", 0,
                       device_parse, device_encode, device_decode, device_sn, device_store,
                       NULL, NULL, device_cleanup},
    [STREAM_EVENT] = {"event", "common_event_stream", "event_processors", "common_event",
                      "event", "payload is not a normalised event", 0, event_parse,
                      event_encode, event_decode, event_sn, event_store, NULL, NULL,
                      event_cleanup},
};

const kind_ops *kind_get(stream_kind kind)
{
    return &kinds[kind];
}
