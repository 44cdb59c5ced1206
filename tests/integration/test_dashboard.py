"""The live operations dashboard (issue 9, docs/dashboard.md): the page the
producer serves at /dashboard, driven in headless Chromium (Debian's chromium
and chromium-driver) against real producer, consumer, Redis and PostgreSQL
processes. A missing browser fails these tests; nothing is skipped."""
import http.client
import json
import os
import shutil
import signal
import time
import uuid

import pytest
import requests

from conftest import TOP, wait_for

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WEB_DIR = os.path.join(TOP, "web", "dashboard")
CHARTJS = "/usr/share/javascript/chart.js/chart.min.js"
OUTPUT = os.path.join(TOP, "build", "test-output")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def dashboard_env(**extra):
    return dict({"LJ_WEB_DIR": WEB_DIR, "LJ_CHARTJS_PATH": CHARTJS}, **extra)


@pytest.fixture(scope="module")
def browser():
    for tool in (CHROMIUM, CHROMEDRIVER):
        assert os.access(tool, os.X_OK), f"{tool} is missing: run scripts/deps.sh"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1700"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


# -- helpers ---------------------------------------------------------------------------------------

def api(stack, path):
    """The endpoint's 200 answer. /api/stats runs one query at a time and
    answers 503 to a caller arriving while the page's own query runs with
    no fresh result cached (by design: never stale figures): retry that."""
    deadline = time.monotonic() + 10
    while True:
        r = requests.get(stack.url + path, timeout=5)
        if r.status_code != 503 or time.monotonic() > deadline:
            return r.json()
        time.sleep(0.1)


def by_id(driver, element_id):
    from selenium.webdriver.common.by import By
    return driver.find_element(By.ID, element_id)


def figure(driver, element_id):
    """The raw value behind a figure on the page (its data-value)."""
    return by_id(driver, element_id).get_attribute("data-value")


def stream_cell(driver, stream, cls):
    from selenium.webdriver.common.by import By
    cells = driver.find_elements(By.CSS_SELECTOR, f'tr[data-stream="{stream}"] td.{cls}')
    return cells[0].get_attribute("data-value") if cells else None


def open_page(driver, stack):
    driver.get(stack.url + "/dashboard")
    wait_for(lambda: by_id(driver, "updated").text.startswith("refreshed"),
             what="the page's first refresh")


def confirm_dialog(driver, accept=True):
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait
    alert = WebDriverWait(driver, 5).until(EC.alert_is_present())
    text = alert.text
    if accept:
        alert.accept()
    else:
        alert.dismiss()
    return text


def admin_result(driver, *words):
    return wait_for(lambda: all(w in by_id(driver, "admin-result").text for w in words) and
                    by_id(driver, "admin-result").text, what=f"admin result with {words}")


def save_screenshot(driver, tmp_path, name):
    path = tmp_path / name
    assert driver.save_screenshot(str(path)), "screenshot failed"
    os.makedirs(OUTPUT, exist_ok=True)
    shutil.copy(path, os.path.join(OUTPUT, name))
    return path


def page_problems(driver):
    """Console lines that mean the page is broken: CSP refusals, script errors."""
    return [e["message"] for e in driver.get_log("browser")
            if "Content Security Policy" in e["message"] or "Uncaught" in e["message"]]


def raw_get(stack, path, method="GET"):
    """One request with the path sent exactly as given (no client-side normalising)."""
    conn = http.client.HTTPConnection("127.0.0.1", stack.http_port, timeout=5)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def fnv1a(s):
    h = 2166136261
    for b in s.encode():
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


def routed_serials(stream, legacy):
    """Serials that ratio 0.5 sends down the stream path, then the legacy path."""
    picked = {True: [], False: []}
    while len(picked[True]) < stream or len(picked[False]) < legacy:
        sn = f"D-{uuid.uuid4().hex[:10]}"
        to_stream = fnv1a(sn) % 10000 < 5000
        if len(picked[to_stream]) < (stream if to_stream else legacy):
            picked[to_stream].append(sn)
    return picked[True] + picked[False]


def upload_mix(stack, seconds, serials):
    """Uploads on both paths for 'seconds' from routed_serials(5, 2): the first on
    /upload_health_data_v2, the others on /upload_health_data at ratio 0.5
    (4 routed to the stream path, 2 to the legacy path). The first and the
    last device raise alerts now and then. Returns (serials, records sent)."""
    sent = 0
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        ts = int(time.time() * 1000)
        for i, sn in enumerate(serials):
            rate = 150 if n % 5 == 0 and sn in (serials[0], serials[-1]) else 70 + i
            path = "/upload_health_data_v2" if i == 0 else "/upload_health_data"
            resp = stack.post(path, {"data": [{"deviceSn": sn, "heartRate": rate,
                                               "timestamp": ts + n}]})
            assert resp.status_code == 200, resp.text
            sent += 1
        n += 1
        time.sleep(0.25)
    return serials, sent


# -- 1. the figures follow the endpoints ---------------------------------------------------------

def test_page_figures_change_with_uploads_and_match_the_endpoints(stack, browser, tmp_path):
    stack.producer(**dashboard_env())
    stack.consumer()
    assert requests.post(stack.url + "/api/stream_traffic_ratio", data='{"ratio":0.5}',
                         timeout=5).status_code == 200
    open_page(browser, stack)
    before = api(stack, "/api/stats")["records_today"]
    wait_for(lambda: figure(browser, "records-today") == str(before), what="today's records")
    assert figure(browser, "stream-requests") == "0"

    serials = routed_serials(5, 2)
    for i, sn in enumerate(serials[:3]):        # three wearers, so active users is not 0
        stack.s.sql("INSERT INTO sys_user (user_name, device_sn, customer_id) VALUES"
                    " (%s, %s, 501)", (f"wearer-{i}", sn))
    serials, sent = upload_mix(stack, 6, serials)

    wait_for(lambda: api(stack, "/api/stats")["records_today"] >= before + sent,
             timeout=15, what="every upload stored")

    def same(page, endpoint):
        return lambda: figure(browser, page) == str(endpoint())

    wait_for(same("records-today", lambda: api(stack, "/api/stats")["records_today"]),
             what="records today on the page = /api/stats")
    assert api(stack, "/api/stats")["active_users"] >= 3
    for page_id, key in (("active-devices", "active_devices"), ("active-users", "active_users"),
                         ("alerts-today", "alerts_today")):
        wait_for(same(page_id, lambda: api(stack, "/api/stats")[key]), what=page_id)
    for page_id, path in (("stream", "stream"), ("legacy", "traditional")):
        wait_for(same(f"{page_id}-requests",
                      lambda: api(stack, "/api/stream_metrics")["summary"][path]["requests"]),
                 what=f"{page_id} requests on the page = /api/stream_metrics")
        assert int(figure(browser, f"{page_id}-requests")) > 0
    metrics = api(stack, "/api/stream_metrics")["summary"]
    assert metrics["stream"]["requests"] + metrics["traditional"]["requests"] == sent
    for path in ("stream", "traditional"):      # the histogram behind the windowed p95
        assert sum(metrics[path]["latency_counts"]) == metrics[path]["requests"]
        assert len(metrics[path]["latency_counts"]) == len(metrics[path]["latency_le_ms"]) + 1
    # The p95 line is over the last 10 s, so while uploads ran it held bucket bounds.
    drawn = browser.execute_script(
        "return Chart.getChart('chart-p95').data.datasets.map(d => d.data)")
    for line in drawn:
        values = [v for v in line if v is not None]
        assert values and set(values) <= set(metrics["stream"]["latency_le_ms"]), line

    stream = stack.stream()
    wait_for(lambda: stream_cell(browser, stream, "len") ==
             str(api(stack, "/api/stream_stats")["streams"][stream]["length"]),
             what="stream length on the page = /api/stream_stats")
    assert int(stream_cell(browser, stream, "consumers")) >= 1
    assert stream_cell(browser, stream, "pending") is not None

    latest = api(stack, "/api/stats")["latest_alerts"]
    assert 0 < len(latest) <= 10
    assert [a["id"] for a in latest] == sorted((a["id"] for a in latest), reverse=True)
    assert set(latest[0]) == {"id", "device_sn", "alert_type", "value", "level", "status",
                              "alert_time", "create_time"}
    alerting = {serials[0], serials[-1]}
    assert alerting <= {a["device_sn"] for a in latest}
    wait_for(lambda: all(sn in by_id(browser, "alerts-body").text for sn in alerting),
             what="our alerts in the latest alerts table")
    # The delivery panel (issue 17) answers from the same /api/stats.
    assert isinstance(api(stack, "/api/stats")["deliveries"], list)
    wait_for(lambda: "waiting" not in by_id(browser, "deliveries-body").text,
             what="the alert delivery panel filled")

    assert by_id(browser, "ratio-current").text == "0.5"
    assert not by_id(browser, "banner-deps").is_displayed()
    assert not by_id(browser, "banner-producer").is_displayed()
    assert not by_id(browser, "charts-missing").is_displayed()
    assert "Redis up" in by_id(browser, "dep-redis").text
    assert "PostgreSQL up" in by_id(browser, "dep-postgres").text
    assert page_problems(browser) == []
    shot = save_screenshot(browser, tmp_path, "dashboard.png")
    assert os.path.getsize(shot) > 20000


def test_page_stays_the_same_size_at_10000_devices(stack, browser):
    """No per-device list anywhere: with 10,000 devices reporting, every
    endpoint the page reads stays a few KiB and the page a fixed number of
    rows, while the device count itself is right."""
    stack.producer(**dashboard_env())
    stack.consumer()
    ts = int(time.time() * 1000)
    for k in range(10):
        batch = [{"deviceSn": f"FLEET-{k * 1000 + i:05d}", "heartRate": 70, "timestamp": ts}
                 for i in range(1000)]
        resp = stack.post("/upload_health_data_v2", {"data": batch})
        assert resp.status_code == 200 and resp.json()["accepted"] == 1000, resp.text
    wait_for(lambda: api(stack, "/api/stats")["active_devices"] >= 10000, timeout=30,
             what="10,000 devices stored")
    for path in ("/api/stats", "/api/stream_stats", "/api/stream_metrics", "/api/stream_health",
                 "/api/health", "/api/stream_traffic_ratio"):
        size = len(requests.get(stack.url + path, timeout=5).content)
        assert size < 16384, (path, size)
    open_page(browser, stack)
    wait_for(lambda: figure(browser, "active-devices") ==
             str(api(stack, "/api/stats")["active_devices"]), what="active devices on the page")
    assert int(figure(browser, "active-devices")) >= 10000
    rows = browser.find_elements("css selector", "tr")
    assert len(rows) < 40, len(rows)
    assert "FLEET-" not in by_id(browser, "panel-streams").text
    assert page_problems(browser) == []


# -- 1b. streams on shards (issue 18) --------------------------------------------------------------

SHARD_ROWS = 8      # the page's bound: shard rows per stream (dashboard.js SHARD_ROWS_SHOWN)
SHARD_FIGURES = ("len", "pending", "lag", "backlog", "consumers")

# Every row of the shard table at one instant (the page redraws it every
# second, so element handles kept across calls would go stale).
SHARD_TABLE_JS = """
return Array.from(document.querySelectorAll('#shards-body tr')).map(function (tr) {
    const v = {};
    tr.querySelectorAll('td').forEach(function (td) {
        if (td.dataset.value !== undefined)
            v[td.classList[0]] = td.dataset.value;
    });
    return {of: tr.dataset.shardOf || '', shard: tr.dataset.shard || '',
            more: tr.dataset.more || '', text: tr.textContent, v: v};
});"""


def shard_table(driver):
    return driver.execute_script(SHARD_TABLE_JS)


def want_shard(stack, figures):
    """The page's figures of one shard of /api/stream_stats (data-value text)."""
    group = next((g for g in figures.get("groups", [])
                  if g["name"] == stack.prefix + "health_processors"), None)
    if group is None:
        return None
    return {"len": str(figures["length"]), "pending": str(group["pending"]),
            "lag": str(group["lag"]), "backlog": str(group["pending"] + group["lag"]),
            "consumers": str(len(group["consumers"]))}


def health_shards(stack):
    return api(stack, "/api/stream_stats")["streams"][stack.stream()]["shards"]


def test_shard_rows_show_each_shards_figures_and_its_backlog(stack, browser):
    """Three shards on one Redis: a row per shard under the sums, with the
    figures /api/stream_stats gives for that shard; entries loaded while no
    consumer runs show as the backlog of the one shard they went to, first."""
    shards = dict(LJ_STREAM_SHARDS=3)
    stack.producer(**dashboard_env(**shards))
    consumer = stack.consumer("--workers", "1", LJ_DEVICE_WORKERS=0, LJ_EVENT_WORKERS=0,
                              **shards)
    tag = f"DS-{uuid.uuid4().hex[:6]}-"
    ts = int(time.time() * 1000)
    for d in range(12):
        resp = stack.post("/upload_health_data_v2",
                          {"data": [{"deviceSn": f"{tag}{d:02d}", "heartRate": 70,
                                     "timestamp": ts}]})
        assert resp.status_code == 200, resp.text
    sql = "SELECT count(*) FROM t_user_health_data WHERE device_sn LIKE %s"
    wait_for(lambda: stack.s.sql(sql, (tag + "%",))[0][0] == 12, timeout=20,
             what="the uploads stored")
    wait_for(lambda: all(want_shard(stack, f) is not None and want_shard(stack, f)["backlog"] == "0"
                         for f in health_shards(stack).values()), what="every shard drained")
    assert consumer.stop() == 0
    for i in range(7):                  # one device: one shard, nobody reading it
        resp = stack.post("/upload_health_data_v2",
                          {"data": [{"deviceSn": tag + "late", "heartRate": 71,
                                     "timestamp": ts + 1 + i}]})
        assert resp.status_code == 200, resp.text
    want = {k: want_shard(stack, f) for k, f in health_shards(stack).items()}
    assert len(want) == 3 and sorted(int(w["backlog"]) for w in want.values()) == [0, 0, 7]
    late = next(k for k, w in want.items() if w["backlog"] == "7")

    open_page(browser, stack)

    def shown():
        rows = [r for r in shard_table(browser) if r["of"] == stack.stream()]
        return {r["shard"]: {c: r["v"].get(c) for c in SHARD_FIGURES} for r in rows} == want \
            and rows
    rows = wait_for(shown, what="the shard rows = /api/stream_stats's shards")
    assert rows[0]["shard"] == late                 # the largest backlog first
    assert "{" in rows[0]["text"] and "7" in rows[0]["text"]
    assert not any(r["more"] for r in shard_table(browser))
    # No device consumer here: no group on its shards, so what waits is their length.
    devices = [r for r in shard_table(browser) if r["of"] == stack.stream("device_info_stream")]
    assert len(devices) == 3, devices
    assert all("no group" in r["text"] and r["v"]["backlog"] == r["v"]["len"] == "0"
               for r in devices), devices
    assert by_id(browser, "shards-table").is_displayed()
    assert stream_cell(browser, stack.stream(), "len") == \
        str(api(stack, "/api/stream_stats")["streams"][stack.stream()]["length"])
    # The sums row's consumers: those of the shards, not "none", and no idle-group warning.
    assert int(stream_cell(browser, stack.stream(), "consumers")) >= 1
    assert "health_processors" not in by_id(browser, "banners").text
    assert page_problems(browser) == []


def test_forty_shards_show_the_largest_backlogs_and_one_line_for_the_rest(stack, browser,
                                                                         tmp_path):
    n = 40
    stack.producer(**dashboard_env(LJ_STREAM_SHARDS=n))
    r = stack.s.redis()
    for k in range(n):                  # groups as a consumer makes them, nobody reading
        key = f"{stack.stream()}:{{{k}}}"
        r.xgroup_create(key, stack.prefix + "health_processors", id="$", mkstream=True)
    ts = int(time.time() * 1000)
    session = requests.Session()
    for d in range(160):
        resp = session.post(stack.url + "/upload_health_data_v2", timeout=10,
                            json={"data": [{"deviceSn": f"DF-{d:03d}", "heartRate": 70,
                                            "timestamp": ts}]})
        assert resp.status_code == 200, resp.text
    want = {k: want_shard(stack, f) for k, f in health_shards(stack).items()}
    assert len(want) == n
    backlogs = sorted((int(w["backlog"]) for w in want.values()), reverse=True)
    assert sum(backlogs) == 160 and backlogs[0] > backlogs[-1]

    open_page(browser, stack)
    wait_for(lambda: any(r["of"] == stack.stream() for r in shard_table(browser)),
             what="the shard rows")
    table = shard_table(browser)
    ours = [r for r in table if r["of"] == stack.stream()]
    more = [r for r in table if r["more"] == stack.stream()]
    assert len(ours) == SHARD_ROWS, len(ours)
    assert [int(r["v"]["backlog"]) for r in ours] == backlogs[:SHARD_ROWS]
    for row in ours:
        assert {c: row["v"][c] for c in SHARD_FIGURES} == want[row["shard"]]
    assert len(more) == 1 and f"and {n - SHARD_ROWS} more shards" in more[0]["text"]
    rest = [want[k] for k in want if k not in {r["shard"] for r in ours}]
    for c in ("len", "pending", "lag", "backlog"):
        assert int(more[0]["v"][c]) == sum(int(w[c]) for w in rest), c
    # Bounded whatever N: each stream kind at most the bound plus its "more" line.
    kinds = {r["of"] or r["more"] for r in table}
    assert len(kinds) == 3
    assert len(table) <= 3 * (SHARD_ROWS + 1), len(table)
    nodes = browser.execute_script("return document.getElementsByTagName('*').length")
    height = browser.execute_script("return document.documentElement.scrollHeight")
    assert nodes < 600, nodes
    assert height < 2800, height
    warn = by_id(browser, "banner-warn").text      # nobody reads: one line, not 40
    assert warn.count("health_processors") == 1 and f"on {n} of {n} shards" in warn, warn
    assert page_problems(browser) == []
    save_screenshot(browser, tmp_path, "dashboard-shards.png")


def test_one_shard_shows_no_shard_table(stack, browser):
    stack.producer(**dashboard_env())
    stack.consumer()
    resp = stack.post("/upload_health_data_v2", {"deviceSn": "DS-ONE", "heartRate": 70})
    assert resp.status_code == 200, resp.text
    open_page(browser, stack)
    wait_for(lambda: stream_cell(browser, stack.stream(), "len") is not None,
             what="the streams table")
    assert not by_id(browser, "shards-table").is_displayed()
    assert shard_table(browser) == []


# -- 2. and 3. admin actions through the page ----------------------------------------------------

def test_ratio_change_through_the_page_uses_the_token_and_takes_effect(stack, browser):
    token = f"dash-{uuid.uuid4().hex}"
    stack.producer(**dashboard_env(LJ_ADMIN_TOKEN=token))
    r = stack.s.redis()
    open_page(browser, stack)
    wait_for(lambda: figure(browser, "ratio-current") == "0", what="ratio 0 on the page")
    box = by_id(browser, "ratio-input")
    box.clear()
    box.send_keys("0.3")

    by_id(browser, "ratio-apply").click()           # no token typed: refused
    assert "to 0.3" in confirm_dialog(browser)
    assert "401" in admin_result(browser, "FAILED")
    by_id(browser, "token").send_keys(token)
    by_id(browser, "ratio-apply").click()           # dismissed: nothing sent
    confirm_dialog(browser, accept=False)
    admin_result(browser, "cancelled")
    assert api(stack, "/api/stream_traffic_ratio")["current_ratio"] == 0

    by_id(browser, "ratio-apply").click()
    confirm_dialog(browser)
    admin_result(browser, "done", "from 0 to 0.3")
    assert api(stack, "/api/stream_traffic_ratio")["current_ratio"] == 0.3
    assert r.get(stack.prefix + "stream_traffic_ratio") == "0.3"
    wait_for(lambda: figure(browser, "ratio-current") == "0.3", what="ratio 0.3 on the page")
    # The token lives in this tab's sessionStorage only.
    assert browser.execute_script("return sessionStorage.getItem('ljwx.adminToken')") == token
    assert browser.execute_script("return localStorage.length") == 0


def test_emergency_rollback_button_sets_the_ratio_to_0(stack, browser):
    token = f"dash-{uuid.uuid4().hex}"
    stack.producer(**dashboard_env(LJ_ADMIN_TOKEN=token))
    assert requests.post(stack.url + "/api/stream_traffic_ratio", data='{"ratio":0.6}',
                         headers={"Authorization": f"Bearer {token}"},
                         timeout=5).status_code == 200
    open_page(browser, stack)
    wait_for(lambda: figure(browser, "ratio-current") == "0.6", what="ratio 0.6 on the page")
    by_id(browser, "token").send_keys(token)
    by_id(browser, "rollback").click()
    assert "ROLLBACK" in confirm_dialog(browser)
    admin_result(browser, "emergency rollback done")
    assert api(stack, "/api/stream_traffic_ratio")["current_ratio"] == 0
    assert stack.s.redis().get(stack.prefix + "stream_traffic_ratio") == "0"
    wait_for(lambda: figure(browser, "ratio-current") == "0", what="ratio 0 on the page")
    wait_for(lambda: stack.s.sql("SELECT reason, new_ratio FROM t_stream_ratio_audit"
                                 " ORDER BY id DESC LIMIT 1") == [("emergency_rollback", 0.0)],
             what="the rollback's audit row")


# -- 4. degradation --------------------------------------------------------------------------------

def test_outages_show_a_banner_naming_what_is_down_and_grey_stale_figures(stack, servers, browser,
                                                                         tmp_path):
    proc = stack.producer(**dashboard_env())
    open_page(browser, stack)
    wait_for(lambda: "Redis up" in by_id(browser, "dep-redis").text, what="Redis up on the page")
    streams_table = browser.find_element("css selector", "#panel-streams table")
    today = by_id(browser, "panel-today").find_element("css selector", "dl")

    servers.stop_redis()
    try:
        wait_for(lambda: by_id(browser, "banner-deps").is_displayed(), what="the outage banner")
        banner = by_id(browser, "banner-deps").text
        assert "Redis" in banner and "down" in banner and "PostgreSQL" not in banner
        wait_for(lambda: "stale" in streams_table.get_attribute("class"),
                 what="the streams table greyed")
        assert "STALE" in by_id(browser, "panel-streams").find_element("css selector",
                                                                        ".age").text
        assert "Redis DOWN" in by_id(browser, "dep-redis").text
        assert "stale" not in today.get_attribute("class")     # PostgreSQL still answers
        save_screenshot(browser, tmp_path, "dashboard-redis-down.png")
    finally:
        servers.start_redis()
    wait_for(lambda: not by_id(browser, "banner-deps").is_displayed(), timeout=20,
             what="the banner to clear once Redis is back")
    wait_for(lambda: "stale" not in streams_table.get_attribute("class"), what="fresh streams")

    servers.stop_pg()
    try:
        wait_for(lambda: "PostgreSQL" in by_id(browser, "banner-deps").text,
                 what="the PostgreSQL banner")
        assert "Redis" not in by_id(browser, "banner-deps").text
        wait_for(lambda: "stale" in today.get_attribute("class"), what="today's figures greyed")
    finally:
        servers.start_pg()
    wait_for(lambda: not by_id(browser, "banner-deps").is_displayed(), timeout=20,
             what="the banner to clear once PostgreSQL is back")

    assert proc.stop() == 0
    wait_for(lambda: by_id(browser, "banner-producer").is_displayed(),
             what="the producer-unreachable banner")
    assert "Producer unreachable" in by_id(browser, "banner-producer").text
    assert "stale" in today.get_attribute("class")


def postgres_pids(servers):
    """The postmaster and every process it started (backends included)."""
    with open(os.path.join(servers.pg_dir, "data", "postmaster.pid")) as f:
        master = int(f.readline())
    children = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == master:
            children.append(int(entry))
    return [master] + children


def test_a_hung_postgresql_is_flagged_and_holds_back_no_other_panel(stack, servers, browser):
    """PostgreSQL stopped with SIGSTOP: connections stay open and nothing
    answers. /api/health answers within its own bound saying PostgreSQL is
    down (it used to hang), /api/stats answers 503; the page must say
    PostgreSQL is down, grey what PostgreSQL feeds, and keep the panels fed
    from the producer's memory live."""
    stack.producer(**dashboard_env())
    open_page(browser, stack)
    wait_for(lambda: "PostgreSQL up" in by_id(browser, "dep-postgres").text, what="PostgreSQL up")
    today = by_id(browser, "panel-today").find_element("css selector", "dl")
    pids = postgres_pids(servers)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        wait_for(lambda: "PostgreSQL is down" in by_id(browser, "banner-deps").text,
                 timeout=15, what="the PostgreSQL-down banner")
        wait_for(lambda: "stale" in today.get_attribute("class"), what="today's figures greyed")
        assert not by_id(browser, "banner-producer").is_displayed()
        age = by_id(browser, "panel-paths").find_element("css selector", ".age")
        assert "STALE" not in age.text, age.text        # /api/stream_metrics: no database
        before = figure(browser, "stream-requests")
        stack.post("/upload_health_data_v2", {"deviceSn": "HUNG-PG-1", "heartRate": 70})
        wait_for(lambda: figure(browser, "stream-requests") == str(int(before) + 1),
                 what="the path figures still live")
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    wait_for(lambda: "PostgreSQL is down" not in by_id(browser, "banner-deps").text, timeout=30,
             what="the banner to clear once PostgreSQL answers")
    wait_for(lambda: "stale" not in today.get_attribute("class"), timeout=15, what="fresh today")


def test_page_without_chartjs_says_so_and_still_shows_figures(stack, browser):
    proc = stack.producer(**dashboard_env(LJ_CHARTJS_PATH="/nonexistent/chart.min.js"))
    assert raw_get(stack, "/dashboard/chart.js")[0] == 404
    open_page(browser, stack)
    assert by_id(browser, "charts-missing").is_displayed()
    wait_for(lambda: figure(browser, "records-today") ==
             str(api(stack, "/api/stats")["records_today"]), what="today's records")
    assert "not serving /nonexistent/chart.min.js" in proc.output()


# -- 5. the static handler -------------------------------------------------------------------------

def assert_security_headers(headers):
    for name, want in SECURITY_HEADERS.items():
        assert want in (headers.get(name) or ""), (name, headers.get(name))


def test_static_files_are_a_fixed_whitelist_with_security_headers(stack):
    stack.producer(**dashboard_env())
    served = {
        "/dashboard": ("index.html", "text/html"),
        "/dashboard/": ("index.html", "text/html"),
        "/dashboard/dashboard.js": ("dashboard.js", "text/javascript"),
        "/dashboard/dashboard.css": ("dashboard.css", "text/css"),
        "/dashboard/chart.js": (CHARTJS, "text/javascript"),
    }
    for path, (name, ctype) in served.items():
        status, headers, body = raw_get(stack, path)
        assert status == 200, path
        assert headers["Content-Type"].startswith(ctype), (path, headers["Content-Type"])
        assert_security_headers(headers)
        with open(os.path.join(WEB_DIR, name), "rb") as f:
            assert body == f.read(), path
    hostile = ["/dashboard/../Makefile", "/dashboard/%2e%2e/x", "/dashboard/nonexistent",
               "/dashboard/..%2fMakefile", "/dashboard/%2e%2e%2fMakefile", "/dashboard/..",
               "/dashboard//etc/passwd", "/dashboard/./dashboard.js", "/dashboard/chart.js/",
               "/dashboard/chart.js/../../Makefile", "/dashboard/dashboard.js%00",
               "/dashboard/DASHBOARD.JS", "/dashboard/web/dashboard/index.html",
               "/dashboard/%2fetc%2fpasswd", "/dashboard/..\\Makefile"]
    for path in hostile:
        status, headers, body = raw_get(stack, path)
        assert status == 404, (path, status)
        assert_security_headers(headers)
        assert json.loads(body)["status"] == "error"
    status, headers, _ = raw_get(stack, "/dashboard", method="POST")
    assert status == 405 and headers["Allow"] == "GET"
    assert raw_get(stack, "/dashboardx")[0] == 404
