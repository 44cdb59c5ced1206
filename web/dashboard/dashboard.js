/* dashboard.js -- the live operations page of ljwx-ingest (docs/dashboard.md).
 *
 * Every second the page reads the producer's public JSON endpoints, one
 * request each (a request still running from the previous second is not
 * sent again, so a slow endpoint never piles up), and redraws each part as
 * its own answer arrives (so one slow endpoint never holds back, nor later
 * overwrites, the others):
 *
 *   /api/health, /api/stream_health   what is down (banner), breakers
 *   /api/stream_metrics               per path figures and the charts
 *   /api/stream_traffic_ratio         the current ratio
 *   /api/stream_stats                 the streams table (and, sharded, the shards')
 *   /api/stats                        today's counters, latest alerts
 *
 * Nothing here lists devices: every figure and table is bounded whatever the
 * fleet size. Nor every shard: a sharded stream shows its SHARD_ROWS_SHOWN
 * shards with the largest backlog and one line summing the others.
 * Server values reach the page as text only (textContent, never
 * HTML): device serials and alert types are client-supplied data.
 *
 * A figure that could not be refreshed keeps its last value, greyed, with a
 * red "stale" label naming the failure; a banner names Redis or PostgreSQL
 * when the producer reports them down, and another says when the producer
 * itself does not answer.
 */
'use strict';

(function () {
    const REFRESH_MS = 1000;
    const WINDOW_MS = 10 * 60 * 1000;       /* the charts' rolling window */
    const FETCH_TIMEOUT_MS = 4000;
    const ADMIN_TIMEOUT_MS = 15000;         /* a ratio change waits on Redis and PostgreSQL */
    const P95_WINDOW = 10;                  /* the p95 line: over the last 10 samples (s) */
    const STALE_AFTER_MS = 5000;            /* no good answer for this long: stale */
    const TOKEN_KEY = 'ljwx.adminToken';    /* sessionStorage only */
    const MAX_CONSUMERS_SHOWN = 20;
    const SHARD_ROWS_SHOWN = 8;             /* per stream; the other shards on one line */
    const PATHS = ['stream', 'traditional'];    /* /api/stream_metrics keys */
    const PATH_IDS = ['stream', 'legacy'];      /* element id prefixes */

    const SOURCES = {
        health: '/api/health',
        stream_health: '/api/stream_health',
        stream_metrics: '/api/stream_metrics',
        ratio: '/api/stream_traffic_ratio',
        stream_stats: '/api/stream_stats',
        stats: '/api/stats',
    };

    const state = {
        inflight: {},           /* source -> true while its request runs */
        lastOk: {},             /* source -> Date of the last usable answer */
        reached: {},            /* source -> whether its last request got an HTTP answer */
        lastAnswer: null,       /* Date of the last HTTP answer from any endpoint */
        latest: {},             /* source -> last usable body */
        problem: {},            /* source -> why the last request failed, or '' */
        unreachableSince: null, /* Date, while no endpoint answers at all */
        recentMetrics: [],      /* the last P95_WINDOW + 1 /api/stream_metrics bodies */
        samples: [],            /* {t, mono, rps: [s, l], p95: [s, l], err: [s, l]} */
        charts: null,
        currentRatio: null,
    };

    function $(id) {
        return document.getElementById(id);
    }

    /* ------------------------------------------------------------------
     * Formatting
     * ------------------------------------------------------------------ */

    function pad2(n) {
        return (n < 10 ? '0' : '') + n;
    }

    function clock(d) {
        return pad2(d.getHours()) + ':' + pad2(d.getMinutes()) + ':' + pad2(d.getSeconds());
    }

    function fmtInt(v) {
        return typeof v === 'number' && isFinite(v) ? Math.round(v).toLocaleString('en-US') : '–';
    }

    function fmtNum(v, digits) {
        return typeof v === 'number' && isFinite(v) ? v.toFixed(digits) : '–';
    }

    function fmtIdle(ms) {
        if (typeof ms !== 'number' || !isFinite(ms) || ms < 0)
            return '?';
        if (ms < 1000)
            return ms + ' ms';
        if (ms < 60000)
            return (ms / 1000).toFixed(1) + ' s';
        if (ms < 3600000)
            return Math.floor(ms / 60000) + ' min';
        return (ms / 3600000).toFixed(1) + ' h';
    }

    /* Sets the text of element 'id' and its raw value in data-value. */
    function setFigure(id, text, raw) {
        const e = $(id);

        e.textContent = text;
        e.dataset.value = raw === undefined || raw === null ? '' : String(raw);
    }

    function cell(text, cls, raw) {
        const td = document.createElement('td');

        td.textContent = text;
        if (cls)
            td.className = cls;
        if (raw !== undefined && raw !== null)
            td.dataset.value = String(raw);
        return td;
    }

    function messageRow(tbody, cols, text) {
        const tr = document.createElement('tr');
        const td = cell(text, 'muted');

        td.colSpan = cols;
        tr.appendChild(td);
        tbody.replaceChildren(tr);
    }

    /* ------------------------------------------------------------------
     * Fetching
     * ------------------------------------------------------------------ */

    /* Resolves to {reached, ok, status, body, text, timedOut}; never rejects. */
    async function request(url, options, timeoutMs) {
        const limit = timeoutMs || FETCH_TIMEOUT_MS;
        const ctl = new AbortController();
        const timer = setTimeout(function () { ctl.abort(); }, limit);
        const opts = Object.assign({cache: 'no-store', credentials: 'omit', signal: ctl.signal},
                                   options || {});

        try {
            const resp = await fetch(url, opts);
            const text = await resp.text();
            let body = null;

            try {
                body = JSON.parse(text);
            } catch (e) {
                body = null;
            }
            return {reached: true, ok: resp.ok, status: resp.status, body: body, text: text,
                    timedOut: false};
        } catch (e) {
            const timedOut = !!e && e.name === 'AbortError';

            return {reached: false, ok: false, status: 0, body: null, timedOut: timedOut,
                    text: timedOut ? 'no answer within ' + limit / 1000 + ' s'
                                   : 'producer unreachable'};
        } finally {
            clearTimeout(timer);
        }
    }

    function describeFailure(r) {
        if (!r.reached)
            return r.text;
        if (r.body && typeof r.body.message === 'string')
            return 'HTTP ' + r.status + ': ' + r.body.message;
        return 'HTTP ' + r.status;
    }

    /* /api/health and /api/stream_health answer 503 with a full body when
     * degraded: that body is exactly what the banner needs. */
    function usable(name, r) {
        if (!r.reached || !r.body || typeof r.body !== 'object')
            return false;
        if (r.ok)
            return true;
        return (name === 'health' && 'redis' in r.body) ||
               (name === 'stream_health' && 'redis_connected' in r.body);
    }

    /* /api/stream_stats reports -1 for a length it could not read (Redis
     * went away mid-answer): keep the last complete table instead. */
    function incomplete(name, body) {
        const streams = name === 'stream_stats' && body.streams;

        return !!streams && Object.keys(streams).some(function (k) {
            return !(streams[k].length >= 0 && streams[k].dead_letters >= 0);
        });
    }

    function accept(name, r, now) {
        if (usable(name, r) && incomplete(name, r.body)) {
            state.problem[name] = 'HTTP ' + r.status + ': Redis did not answer every query';
            return false;
        }
        if (usable(name, r)) {
            state.latest[name] = r.body;
            state.lastOk[name] = now;
            state.problem[name] = '';
            return true;
        }
        state.problem[name] = describeFailure(r);
        return false;
    }

    function isFresh(name, now) {
        return !state.problem[name] && state.lastOk[name] !== undefined &&
               now - state.lastOk[name] <= STALE_AFTER_MS;
    }

    /* The producer counts as unreachable once every endpoint's last request
     * got no HTTP answer; any answer clears it. */
    function noteReach(name, r, now) {
        state.reached[name] = r.reached;
        if (r.reached) {
            state.lastAnswer = now;
            state.unreachableSince = null;
        } else if (Object.keys(SOURCES).every(function (n) { return state.reached[n] === false; })) {
            state.unreachableSince = state.unreachableSince || now;
        }
    }

    /* Asks one endpoint, unless its previous request still runs, and draws
     * what it answered as soon as it arrives. */
    function poll(name) {
        if (state.inflight[name])
            return;
        state.inflight[name] = true;
        request(SOURCES[name]).then(function (r) {
            const now = new Date();

            state.inflight[name] = false;
            noteReach(name, r, now);
            renderSource(name, accept(name, r, now), now);
            renderStatus(now);
        });
    }

    function tick() {
        Object.keys(SOURCES).forEach(poll);
        renderStatus(new Date());   /* ages move on even while nothing answers */
    }

    /* ------------------------------------------------------------------
     * Rendering
     * ------------------------------------------------------------------ */

    function renderSource(name, ok, now) {
        const body = state.latest[name];

        if (name === 'stream_metrics')
            addSample(now, ok ? body : null);
        if (!ok)
            return;
        if (name === 'stream_metrics')
            renderPaths(body);
        else if (name === 'ratio')
            renderRatio(body);
        else if (name === 'stats')
            renderStats(body);
        else if (name === 'stream_stats')
            renderStreams(body);
    }

    /* What depends on every source: the header, the banners, stale marks. */
    function renderStatus(now) {
        renderDeps(now);
        renderBanners(now);
        markStale(now);
        $('updated').textContent = state.unreachableSince
            ? 'no answer since ' + clock(state.unreachableSince)
            : state.lastAnswer ? 'refreshed ' + clock(state.lastAnswer) : 'waiting for the producer';
    }

    function dependencies(now) {
        const h = isFresh('health', now) ? state.latest.health : null;
        const sh = isFresh('stream_health', now) ? state.latest.stream_health : null;
        const redisDown = (h && h.redis === false) || (sh && sh.redis_connected === false);
        const redisUp = !redisDown && ((h && h.redis === true) || (sh && sh.redis_connected === true));
        const pgDown = h && h.postgres === false;
        const pgUp = h && h.postgres === true;

        return {
            redis: redisDown ? 'down' : redisUp ? 'up' : 'unknown',
            postgres: pgDown ? 'down' : pgUp ? 'up' : 'unknown',
            breakers: sh && sh.flow_control && sh.flow_control.breakers,
        };
    }

    function renderDeps(now) {
        const d = dependencies(now);
        const names = {redis: 'Redis', postgres: 'PostgreSQL'};
        const b = d.breakers;

        Object.keys(names).forEach(function (k) {
            const e = $('dep-' + k);

            e.className = 'dep ' + d[k];
            e.textContent = names[k] + (d[k] === 'up' ? ' up' : d[k] === 'down' ? ' DOWN' : ' ?');
        });
        $('breakers').textContent = b
            ? 'breakers: ' + Object.keys(b).map(function (k) {
                return k + ' ' + String(b[k].state).replace('_', '-');
            }).join(', ')
            : '';
    }

    function setBanner(id, title, items) {
        const e = $(id);
        const ul = document.createElement('ul');

        if (!title) {
            e.hidden = true;
            e.replaceChildren();
            return;
        }
        items.forEach(function (t) {
            const li = document.createElement('li');

            li.textContent = t;
            ul.appendChild(li);
        });
        e.replaceChildren(document.createTextNode(title));
        if (items.length)
            e.appendChild(ul);
        e.hidden = false;
    }

    function renderBanners(now) {
        const d = dependencies(now);
        const down = [];
        const warn = [];
        const b = d.breakers || {};

        if (state.unreachableSince) {
            setBanner('banner-producer', 'Producer unreachable since ' +
                      clock(state.unreachableSince) + ': no endpoint answers. Every figure ' +
                      'below is stale; retrying every second.', []);
        } else {
            setBanner('banner-producer', '', []);
        }
        if (d.redis === 'down')
            down.push('Redis is down (reported by /api/health and /api/stream_health): ' +
                      '/upload_health_data_v2 answers 503, routed uploads fall back to the ' +
                      'legacy path; stream figures are stale.');
        if (d.postgres === 'down')
            down.push('PostgreSQL is down (reported by /api/health): legacy-path uploads ' +
                      'answer 503 and consumers store nothing until it is back; today\'s ' +
                      'figures are stale.');
        setBanner('banner-deps', down.length
            ? 'Degraded: ' + [d.redis === 'down' ? 'Redis' : '',
                              d.postgres === 'down' ? 'PostgreSQL' : '']
                .filter(Boolean).join(' and ') + ' down'
            : '', down);
        Object.keys(b).forEach(function (k) {
            if (b[k] && b[k].state && b[k].state !== 'closed')
                warn.push('Circuit breaker for ' + k + ' is ' + String(b[k].state).replace('_', '-') +
                          ' (next probe in ' + fmtIdle(b[k].retry_in_ms) + ').');
        });
        if (!state.unreachableSince && !isFresh('health', now) &&
            (state.problem.health || state.lastOk.health))
            warn.push('Cannot tell whether Redis and PostgreSQL are up: /api/health ' +
                      (state.problem.health || 'has not answered for ' +
                       Math.round((now - state.lastOk.health) / 1000) + ' s') +
                      ' (a hung PostgreSQL or Redis looks like this).');
        if (isFresh('stream_stats', now))
            warn.push.apply(warn, idleGroups(state.latest.stream_stats));
        setBanner('banner-warn', warn.length ? 'Attention' : '', warn);
    }

    /* One line per group without a consumer; sharded, one per group over
     * its shards (the sums row's group carries no consumers of its own). */
    function idleGroups(body) {
        const out = [];
        const streams = (body && body.streams) || {};

        Object.keys(streams).forEach(function (name) {
            const keys = shardKeys(streams[name]);

            (streams[name].groups || []).forEach(function (g) {
                const idle = keys.filter(function (k) {
                    const sg = groupNamed(streams[name].shards[k].groups, g.name);

                    return sg && !(sg.consumers && sg.consumers.length);
                });

                if (keys.length === 0 && !(g.consumers && g.consumers.length))
                    out.push('No consumer in group ' + g.name + ' of ' + name +
                             ': nothing from this stream is being stored.');
                else if (idle.length)
                    out.push('No consumer in group ' + g.name + ' on ' + idle.length + ' of ' +
                             keys.length + ' shards of ' + name + ': nothing from those ' +
                             'shards is being stored.');
            });
        });
        return out;
    }

    function markStale(now) {
        Object.keys(SOURCES).forEach(function (name) {
            const fresh = isFresh(name, now);
            const last = state.lastOk[name];
            const why = state.problem[name] ||
                (last ? 'no answer for ' + Math.round((now - last) / 1000) + ' s' : 'no answer yet');

            document.querySelectorAll('[data-source="' + name + '"]').forEach(function (e) {
                e.classList.toggle('stale', !fresh);
            });
            document.querySelectorAll('[data-age="' + name + '"]').forEach(function (e) {
                e.classList.toggle('stale-label', !fresh);
                e.textContent = fresh
                    ? 'updated ' + clock(last)
                    : 'STALE' + (last ? ' since ' + clock(last) : '') + ': ' + why;
            });
        });
    }

    /* -- per path figures and charts ----------------------------------- */

    /* The p95 (ms) of the requests between two answers, from the difference
     * of their histograms; null when none came or the producer restarted. */
    function windowP95(cur, old) {
        const le = cur && cur.latency_le_ms;
        const a = cur && cur.latency_counts;
        const b = old && old.latency_counts;
        let total = 0;
        let seen = 0;
        let i;

        if (!Array.isArray(le) || !Array.isArray(a) || !Array.isArray(b) || a.length !== b.length)
            return null;
        const d = a.map(function (v, k) { return v - b[k]; });
        if (d.some(function (v) { return v < 0; }))
            return null;
        d.forEach(function (v) { total += v; });
        if (total === 0)
            return null;
        for (i = 0; i < d.length; i++) {
            seen += d[i];
            if (seen >= Math.ceil(0.95 * total))
                return le[Math.min(i, le.length - 1)];
        }
        return le[le.length - 1];
    }

    function sampleOf(now, m, prev, windowStart) {
        const s = {t: now, mono: performance.now(), rps: [null, null], p95: [null, null],
                   err: [null, null]};
        const dt = m && prev ? m.duration_seconds - prev.duration_seconds : 0;

        PATHS.forEach(function (p, i) {
            const cur = m && m.summary && m.summary[p];
            const old = prev && prev.summary && prev.summary[p];
            const first = windowStart && windowStart.summary && windowStart.summary[p];
            let dn;

            if (!cur)
                return;
            s.p95[i] = Array.isArray(cur.latency_counts) ? windowP95(cur, first)
                                                          : cur.p95_response_time;
            if (!old || !(dt > 0) || cur.requests < old.requests)
                return;     /* first sample, or the producer restarted */
            dn = cur.requests - old.requests;
            s.rps[i] = dn / dt;
            s.err[i] = dn > 0 ? 100 * (cur.errors - old.errors) / dn : 0;
        });
        return s;
    }

    function addSample(now, m) {
        const recent = state.recentMetrics;
        let s;

        if (m && recent.length && m.duration_seconds < recent[recent.length - 1].duration_seconds)
            recent.length = 0;      /* the producer restarted: its counters began again */
        s = sampleOf(now, m, m ? recent[recent.length - 1] : null, m ? recent[0] : null);
        if (m) {
            recent.push(m);
            if (recent.length > P95_WINDOW + 1)
                recent.shift();
        }
        state.samples.push(s);
        while (state.samples.length && s.mono - state.samples[0].mono > WINDOW_MS)
            state.samples.shift();
        PATH_IDS.forEach(function (id, i) {
            if (m) {
                setFigure(id + '-rps', fmtNum(s.rps[i], 1), s.rps[i]);
                setFigure(id + '-error-rate', fmtNum(s.err[i], 2), s.err[i]);
                setFigure(id + '-p95', fmtNum(s.p95[i], 1), s.p95[i]);
            }
        });
        updateCharts();
    }

    function renderPaths(m) {
        PATHS.forEach(function (p, i) {
            const cur = (m.summary && m.summary[p]) || {};
            const id = PATH_IDS[i];

            setFigure(id + '-requests', fmtInt(cur.requests), cur.requests);
            setFigure(id + '-errors', fmtInt(cur.errors), cur.errors);
        });
    }

    function dataset(label, color) {
        return {label: label, data: [], borderColor: color, backgroundColor: color,
                borderWidth: 2, pointRadius: 0, tension: 0, spanGaps: false};
    }

    function makeChart(canvas, unit) {
        return new window.Chart(canvas, {
            type: 'line',
            data: {labels: [], datasets: [dataset('stream', '#1f6fd1'),
                                          dataset('legacy', '#e07b00')]},
            options: {
                animation: false,
                responsive: true,
                maintainAspectRatio: false,
                interaction: {mode: 'index', intersect: false},
                scales: {
                    x: {ticks: {maxTicksLimit: 6, maxRotation: 0, autoSkip: true}},
                    y: {beginAtZero: true, title: {display: true, text: unit}},
                },
                plugins: {legend: {position: 'bottom', labels: {boxWidth: 12}}},
            },
        });
    }

    function initCharts() {
        if (typeof window.Chart !== 'function') {
            $('charts-missing').hidden = false;
            return;
        }
        state.charts = {
            rps: makeChart($('chart-rps'), 'requests/s'),
            p95: makeChart($('chart-p95'), 'ms'),
            err: makeChart($('chart-errors'), '%'),
        };
    }

    function updateCharts() {
        const labels = state.samples.map(function (s) { return clock(s.t); });

        if (!state.charts)
            return;
        Object.keys(state.charts).forEach(function (key) {
            const chart = state.charts[key];

            chart.data.labels = labels;
            chart.data.datasets.forEach(function (ds, i) {
                ds.data = state.samples.map(function (s) { return s[key][i]; });
            });
            chart.update('none');
        });
    }

    /* -- ratio, today, streams, alerts ----------------------------------- */

    function renderRatio(body) {
        const r = body.current_ratio;

        state.currentRatio = typeof r === 'number' ? r : null;
        setFigure('ratio-current', state.currentRatio === null ? '–' : String(r), r);
        $('ratio-percent').textContent = state.currentRatio === null ? ''
            : '(' + (100 * r).toFixed(1) + ' % of devices on the stream path)';
    }

    function renderStats(body) {
        setFigure('records-today', fmtInt(body.records_today), body.records_today);
        setFigure('active-devices', fmtInt(body.active_devices), body.active_devices);
        setFigure('active-users', fmtInt(body.active_users), body.active_users);
        setFigure('alerts-today', fmtInt(body.alerts_today), body.alerts_today);
        renderAlerts(Array.isArray(body.latest_alerts) ? body.latest_alerts : null);
        renderDeliveries(Array.isArray(body.deliveries) ? body.deliveries : null);
    }

    /* One row per channel: its deliveries by status (t_alert_delivery). */
    function renderDeliveries(rows) {
        const tbody = $('deliveries-body');
        const by = {};

        if (rows === null) {
            messageRow(tbody, 4, 'no delivery log (run migration 007 and ljwx-notifier)');
            return;
        }
        if (rows.length === 0) {
            messageRow(tbody, 4, 'no deliveries in the last 24 h');
            return;
        }
        rows.forEach(function (r) {
            const c = String(r.channel || '');

            by[c] = by[c] || {DELIVERED: 0, PENDING: 0, DEAD: 0};
            by[c][String(r.status || '')] = Number(r.n) || 0;
        });
        tbody.replaceChildren.apply(tbody, Object.keys(by).sort().map(function (c) {
            const tr = document.createElement('tr');

            tr.dataset.channel = c;
            tr.append(cell(c), cell(fmtInt(by[c].DELIVERED), null, by[c].DELIVERED),
                      cell(fmtInt(by[c].PENDING), null, by[c].PENDING),
                      cell(fmtInt(by[c].DEAD), by[c].DEAD ? 'level-critical' : null, by[c].DEAD));
            return tr;
        }));
    }

    function renderAlerts(alerts) {
        const tbody = $('alerts-body');

        if (alerts === null) {
            messageRow(tbody, 6, 'this producer does not report latest alerts');
            return;
        }
        if (alerts.length === 0) {
            messageRow(tbody, 6, 'no alerts yet');
            return;
        }
        tbody.replaceChildren.apply(tbody, alerts.map(function (a) {
            const tr = document.createElement('tr');
            const when = typeof a.alert_time === 'string'
                ? a.alert_time.replace('T', ' ').replace(/\.\d+Z$/, '') : '';

            tr.dataset.alertId = String(a.id);
            tr.append(cell(when), cell(String(a.device_sn || '')), cell(String(a.alert_type || '')),
                      cell(a.value === null || a.value === undefined ? '' : String(a.value)),
                      cell(String(a.level || ''), 'level-' + String(a.level || '').toLowerCase()),
                      cell(String(a.status || '')));
            return tr;
        }));
    }

    function consumersText(consumers) {
        const shown = consumers.slice(0, MAX_CONSUMERS_SHOWN).map(function (c) {
            return c.name + ' (' + fmtInt(c.pending) + ', idle ' + fmtIdle(c.idle_ms) + ')';
        });

        if (consumers.length > MAX_CONSUMERS_SHOWN)
            shown.push('+' + (consumers.length - MAX_CONSUMERS_SHOWN) + ' more');
        return shown.length ? shown.join('; ') : 'none';
    }

    /* The group named 'name' in 'groups', or null. */
    function groupNamed(groups, name) {
        return (Array.isArray(groups) ? groups : []).find(function (g) {
            return g && g.name === name;
        }) || null;
    }

    /* The shard names of stream 's' when it has more than one shard, else []. */
    function shardKeys(s) {
        const keys = s && s.shards && typeof s.shards === 'object' ? Object.keys(s.shards) : [];

        return keys.length > 1 ? keys : [];
    }

    /* The consumers of group 'group' over the shards of 's', one per name:
     * pending summed, the shortest idle time. */
    function shardConsumers(s, group) {
        const by = {};

        shardKeys(s).forEach(function (k) {
            const g = groupNamed(s.shards[k].groups, group);

            ((g && g.consumers) || []).forEach(function (c) {
                const m = by[c.name] ||
                          (by[c.name] = {name: c.name, pending: 0, idle_ms: c.idle_ms});

                m.pending += Number(c.pending) || 0;
                m.idle_ms = Math.min(m.idle_ms, c.idle_ms);
            });
        });
        return Object.keys(by).sort().map(function (n) { return by[n]; });
    }

    function streamRow(name, s, g) {
        const tr = document.createElement('tr');
        const consumers = g ? (shardKeys(s).length ? shardConsumers(s, g.name) : g.consumers || [])
                            : null;

        tr.dataset.stream = name;
        if (g)
            tr.dataset.group = g.name;
        tr.append(cell(name, 'name'), cell(fmtInt(s.length), 'len', s.length),
                  cell(fmtInt(s.dead_letters), 'dead', s.dead_letters),
                  cell(g ? g.name : 'no group', 'group'),
                  cell(g ? fmtInt(g.lag) : '–', 'lag', g ? g.lag : null),
                  cell(g ? fmtInt(g.pending) : '–', 'pending', g ? g.pending : null),
                  cell(g ? consumersText(consumers) : '', 'consumers',
                       g ? consumers.length : null));
        return tr;
    }

    function known(v) {
        return typeof v === 'number' && isFinite(v) && v >= 0 ? v : null;
    }

    /* One shard 'key' of stream 'name' in its group 'group': the figures of
     * its row, null where not known (pending and lag: or the shard has no
     * such group). The backlog is pending + lag; without the group, the
     * length: a consumer creates its group at ID 0, so every entry waits. */
    function shardFigures(name, key, index, sh, group) {
        const g = groupNamed(sh.groups, group);
        const pending = g ? known(g.pending) : null;
        const lag = g ? known(g.lag) : null;

        return {key: key, index: index,
                label: key.indexOf(name + ':') === 0 ? key.slice(name.length + 1) : key,
                length: known(sh.length), pending: pending, lag: lag,
                backlog: !g ? known(sh.length)
                            : pending !== null && lag !== null ? pending + lag : null,
                consumers: g ? g.consumers || [] : null};
    }

    /* Largest backlog first; an unknown one (Redis did not say what it is)
     * before all, as it may be the largest; then in shard order. */
    function byBacklog(a, b) {
        const x = a.backlog === null ? Infinity : a.backlog;
        const y = b.backlog === null ? Infinity : b.backlog;

        return x !== y ? (y > x ? 1 : -1) : a.index - b.index;
    }

    function figureCell(v, cls) {
        return cell(v === null ? '–' : fmtInt(v), cls, v);
    }

    function shardRow(name, f) {
        const tr = document.createElement('tr');

        tr.dataset.shardOf = name;
        tr.dataset.shard = f.key;
        tr.append(cell(name, 'name'), cell(f.label, 'shard'), figureCell(f.length, 'len'),
                  figureCell(f.pending, 'pending'), figureCell(f.lag, 'lag'),
                  figureCell(f.backlog, f.backlog ? 'backlog backlog-high' : 'backlog'),
                  cell(f.consumers ? consumersText(f.consumers) : 'no group', 'consumers',
                       f.consumers ? f.consumers.length : null));
        return tr;
    }

    /* The sum of figure 'k' over 'rest'; null once one is not known. */
    function sumOf(rest, k) {
        return rest.reduce(function (acc, f) {
            return acc === null || f[k] === null ? null : acc + f[k];
        }, 0);
    }

    /* "and K more shards" with the sums of the shards 'rest'. */
    function moreRow(name, rest) {
        const tr = document.createElement('tr');
        const names = {};
        const backlog = sumOf(rest, 'backlog');

        rest.forEach(function (f) {
            (f.consumers || []).forEach(function (c) { names[c.name] = true; });
        });
        tr.className = 'more';
        tr.dataset.more = name;
        tr.append(cell(name, 'name'), cell('and ' + rest.length + ' more shards', 'shard'),
                  figureCell(sumOf(rest, 'length'), 'len'),
                  figureCell(sumOf(rest, 'pending'), 'pending'),
                  figureCell(sumOf(rest, 'lag'), 'lag'),
                  figureCell(backlog, backlog ? 'backlog backlog-high' : 'backlog'),
                  cell(fmtInt(Object.keys(names).length) + ' distinct', 'consumers',
                       Object.keys(names).length));
        return tr;
    }

    /* The shard rows of stream 'name': at most SHARD_ROWS_SHOWN, then one
     * line for the others, so the page keeps its size whatever N. */
    function shardRows(name, s) {
        const group = s.groups && s.groups[0] ? s.groups[0].name : '';
        const all = shardKeys(s).map(function (k, i) {
            return shardFigures(name, k, i, s.shards[k], group);
        }).sort(byBacklog);
        const rows = all.slice(0, SHARD_ROWS_SHOWN).map(function (f) { return shardRow(name, f); });

        if (all.length > SHARD_ROWS_SHOWN)
            rows.push(moreRow(name, all.slice(SHARD_ROWS_SHOWN)));
        return rows;
    }

    function renderStreams(body) {
        const tbody = $('streams-body');
        const streams = body.streams || {};
        const rows = [];
        const shards = [];

        Object.keys(streams).forEach(function (name) {
            const s = streams[name];
            const groups = Array.isArray(s.groups) && s.groups.length ? s.groups : [null];

            groups.forEach(function (g) { rows.push(streamRow(name, s, g)); });
            shards.push.apply(shards, shardRows(name, s));
        });
        if (rows.length === 0)
            messageRow(tbody, 7, 'no streams');
        else
            tbody.replaceChildren.apply(tbody, rows);
        $('shards-body').replaceChildren.apply($('shards-body'), shards);
        $('shards-caption').textContent = 'Shards: per stream the ' + SHARD_ROWS_SHOWN +
            ' with the largest backlog, then the others summed';
        $('shards-table').hidden = shards.length === 0;
    }

    /* ------------------------------------------------------------------
     * Admin actions
     * ------------------------------------------------------------------ */

    function storedToken() {
        try {
            return window.sessionStorage.getItem(TOKEN_KEY) || '';
        } catch (e) {
            return '';
        }
    }

    function storeToken(value) {
        try {
            if (value)
                window.sessionStorage.setItem(TOKEN_KEY, value);
            else
                window.sessionStorage.removeItem(TOKEN_KEY);
        } catch (e) {
            /* storage disabled: the field still works for this page */
        }
    }

    function showResult(kind, text) {
        const e = $('admin-result');

        e.className = 'result' + (kind ? ' ' + kind : '');
        e.textContent = text ? clock(new Date()) + ' ' + text : '';
    }

    function setBusy(busy) {
        $('ratio-apply').disabled = busy;
        $('rollback').disabled = busy;
    }

    async function adminPost(url, body, what) {
        const headers = {'Content-Type': 'application/json'};
        const token = $('token').value.trim();
        let r;

        if (token && !/^[\x21-\x7e]+$/.test(token)) {
            showResult('err', what + ' not sent: the admin token may hold only printable ' +
                       'ASCII characters, no spaces');
            return;
        }
        if (token)
            headers.Authorization = 'Bearer ' + token;
        setBusy(true);
        showResult('', what + ': sending…');
        try {
            r = await request(url, {method: 'POST', headers: headers, body: JSON.stringify(body)},
                              ADMIN_TIMEOUT_MS);
        } finally {
            setBusy(false);
        }
        if (r.ok && r.body && r.body.success)
            showResult('ok', what + ' done: ' + r.body.message);
        else if (r.timedOut)
            showResult('err', what + ': RESULT UNKNOWN, ' + r.text + '; it may have been ' +
                       'applied: check the ratio shown before trying again');
        else
            showResult('err', what + ' FAILED: ' + describeFailure(r) +
                       (r.status === 401 ? ' (type the admin token above)' : ''));
        tick();
    }

    function onApplyRatio(ev) {
        const raw = $('ratio-input').value.trim();
        const v = Number(raw);
        const cur = state.currentRatio === null ? 'unknown' : String(state.currentRatio);

        ev.preventDefault();
        if (raw === '' || !isFinite(v) || v < 0 || v > 1) {
            showResult('err', 'the ratio must be a number from 0 to 1');
            return;
        }
        if (!window.confirm('Change the stream traffic ratio from ' + cur + ' to ' + v + '?\n\n' +
                            'Every producer instance follows within a second.')) {
            showResult('', 'ratio change cancelled');
            return;
        }
        adminPost('/api/stream_traffic_ratio', {ratio: v}, 'ratio change');
    }

    function onRollback() {
        if (!window.confirm('EMERGENCY ROLLBACK\n\nSet the stream traffic ratio to 0 on every ' +
                            'producer: all routed uploads take the legacy path at once. ' +
                            'Entries already in the streams are still stored.\n\nRoll back now?')) {
            showResult('', 'rollback cancelled');
            return;
        }
        adminPost('/api/emergency_rollback', {}, 'emergency rollback');
    }

    function initControls() {
        const token = $('token');

        token.value = storedToken();
        token.addEventListener('input', function () { storeToken(token.value.trim()); });
        $('token-forget').addEventListener('click', function () {
            token.value = '';
            storeToken('');
            showResult('', 'token forgotten');
        });
        $('ratio-form').addEventListener('submit', onApplyRatio);
        $('rollback').addEventListener('click', onRollback);
    }

    function start() {
        initControls();
        initCharts();
        tick();
        setInterval(tick, REFRESH_MS);
    }

    if (document.readyState === 'loading')
        document.addEventListener('DOMContentLoaded', start);
    else
        start();
}());
