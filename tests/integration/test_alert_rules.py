"""deploy/prometheus/alerts.yml: valid (`promtool check rules`), one
`promtool test rules` case per rule that fails when the rule never fires, and
every ljwx_* metric (and label matcher) the rules use is in the real /metrics
of a running producer and consumer, so renaming a metric breaks this test."""
import os
import re
import shutil
import subprocess
import time

import psycopg
import requests
import yaml

from conftest import TOP, Stack, free_port, reading, wait_for

PROM = os.path.join(TOP, "deploy", "prometheus")
RULES = os.path.join(PROM, "alerts.yml")
RULES_TEST = os.path.join(PROM, "alerts_test.yml")
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"   # scripts/deps.sh: prometheus
EXPECTED = {"LjwxBacklogGrowing", "LjwxEntriesPendingTooLong", "LjwxDeadLettersRising",
            "LjwxBreakerOpen", "LjwxStreamErrorRateHigh", "LjwxProducerDown",
            "LjwxConsumerDown", "LjwxPartitionsAheadMissing", "LjwxRedisAofGrowing",
            "LjwxAlertDeliveryDeadLetters", "LjwxNotifierDown", "LjwxRetentionFailing"}
PARTITION_LOCK = 7262022    # consumer/upkeep.c, migration 001
SELECTOR = re.compile(r"\b(ljwx_\w+)(?:\{([^}]*)\})?")
MATCHER = re.compile(r'(\w+)\s*=\s*"([^"]*)"')


def promtool(*args, cwd=PROM):
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60)


def rules():
    with open(RULES) as f:
        return [r for g in yaml.safe_load(f)["groups"] for r in g["rules"]]


def samples(text):
    """(name, {label: value}) of every sample line of a /metrics answer."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})? \S+$", line)
        assert m, f"not a sample line: {line!r}"
        out.append((m.group(1), dict(MATCHER.findall(m.group(2) or ""))))
    return out


def test_rules_are_valid_and_the_expected_set():
    out = promtool("check", "rules", RULES)
    assert out.returncode == 0, out.stdout + out.stderr
    assert {r["alert"] for r in rules()} == EXPECTED
    out = promtool("check", "config", os.path.join(PROM, "prometheus.yml"))
    assert out.returncode == 0, out.stdout + out.stderr


def test_promtool_unit_tests_pass():
    out = promtool("test", "rules", RULES_TEST)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_every_rule_has_a_unit_test_that_fails_without_it(tmp_path):
    """A rule that never fires must fail its own promtool case."""
    with open(RULES_TEST) as f:
        spec = yaml.safe_load(f)
    tested = {t["alertname"] for g in spec["tests"] for t in g["alert_rule_test"]
              if t.get("exp_alerts")}
    assert tested == EXPECTED, "every rule needs a case where it fires"
    with open(RULES) as f:
        doc = yaml.safe_load(f)
    for group in doc["groups"]:
        for rule in group["rules"]:
            saved, rule["expr"] = rule["expr"], "vector(1) == 0"
            (tmp_path / "alerts.yml").write_text(yaml.safe_dump(doc))
            (tmp_path / "alerts_test.yml").write_text(yaml.safe_dump(spec))
            out = promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)
            rule["expr"] = saved
            assert out.returncode != 0, f"{rule['alert']}: no test notices it never fires"
            assert f"alertname: {rule['alert']}," in out.stdout + out.stderr, out.stderr


def test_rule_metrics_are_exported_by_the_binaries(stack):
    port = free_port()
    stack.producer()
    stack.consumer(LJ_STATUS_PORT=port)
    r = stack.post("/upload_health_data", {"data": [reading("ALRT0001", 1764000000000)]})
    assert r.status_code == 200, r.text
    consumer_url = f"http://127.0.0.1:{port}/metrics"

    def consumer_up():
        try:
            return "ljwx_consumer_group_lag{" in requests.get(consumer_url, timeout=2).text
        except requests.ConnectionError:
            return False
    wait_for(consumer_up, what="the consumer's /metrics")
    wait_for(lambda: len(aof_sizes(stack.get("/metrics").text)) == 2,
             timeout=30, what="the producer's first INFO persistence")
    wait_for(lambda: partitions_ahead(consumer_url, stack) == 3,
             timeout=30, what="the health worker's upkeep to report 3 months ahead")
    notifier_port = free_port()
    stack._start("ljwx-notifier", [], stack.env(LJ_NOTIFY_STATUS_PORT=notifier_port,
                                                LJ_ALERT_WEBHOOK_URL="http://127.0.0.1:9/x"))
    notifier_url = f"http://127.0.0.1:{notifier_port}/metrics"

    def notifier_metrics():
        try:
            return requests.get(notifier_url, timeout=2).text
        except requests.ConnectionError:
            return ""
    exported = samples(stack.get("/metrics").text) + \
        samples(requests.get(consumer_url, timeout=5).text) + \
        samples(wait_for(notifier_metrics, what="the notifier's /metrics"))
    names = {n for n, _ in exported}
    used = 0
    for rule in rules():
        for name, matchers in SELECTOR.findall(rule["expr"]):
            used += 1
            assert name in names, f"{rule['alert']}: {name} is not in any /metrics"
            want = {k: v for k, v in MATCHER.findall(matchers) if k not in ("job", "instance")}
            assert any(n == name and want.items() <= labels.items() for n, labels in exported), \
                f"{rule['alert']}: no sample {name}{want}"
    assert used >= 8


def partitions_ahead(url, stack):
    """The health worker's ljwx_consumer_partitions_ahead (None: not there)."""
    try:
        text = requests.get(url, timeout=2).text
    except requests.ConnectionError:
        return None
    m = re.search(r'^ljwx_consumer_partitions_ahead\{[^}]*stream="%s"\} (\S+)$'
                  % re.escape(stack.stream()), text, re.M)
    return float(m.group(1)) if m else None


def test_partitions_ahead_counts_the_months_that_exist(stack):
    """Another process holds the upkeep's lock and never makes month +3: the
    gauge says 2, so LjwxPartitionsAheadMissing would fire; the other kinds
    (not partitioned) say -1."""
    month3 = stack.s.sql("SELECT 't_user_health_data_' || to_char(date_trunc('month',"
                         " now() AT TIME ZONE 'UTC') + interval '3 months', 'YYYYMM')")[0][0]
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    with psycopg.connect(stack.s.dsn, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (PARTITION_LOCK,))
        try:
            assert stack.s.sql("SELECT count(*) FROM " + month3)[0][0] == 0
            stack.s.sql("DROP TABLE " + month3)
            stack.consumer(LJ_STATUS_PORT=port)
            wait_for(lambda: partitions_ahead(url, stack) == 2,
                     timeout=30, what="the gauge to count 2 months ahead")
            text = requests.get(url, timeout=5).text
            others = [float(v) for v in re.findall(
                r'^ljwx_consumer_partitions_ahead\{[^}]*stream="[^"]*(?:device_info|common_event)'
                r'_stream"\} (\S+)$', text, re.M)]
            assert others == [-1, -1]
        finally:
            holder.execute("SELECT pg_advisory_unlock(%s)", (PARTITION_LOCK,))
            stack.s.sql("SELECT ensure_health_partitions(3)")


def aof_sizes(text):
    return {m.group(1): float(m.group(2)) for m in
            re.finditer(r"^ljwx_redis_aof_(current|base)_bytes (\S+)$", text, re.M)}


def test_redis_aof_sizes_follow_info_persistence(stack, tmp_path):
    """The test Redis runs with appendonly yes: both sizes as INFO says; a
    Redis without AOF: neither gauge (nothing to alert on)."""
    stack.producer(LJ_RATIO_REFRESH_MS=200)
    r = stack.s.redis()
    wait_for(lambda: len(aof_sizes(stack.get("/metrics").text)) == 2, timeout=30,
             what="both AOF gauges")
    info = r.info("persistence")
    got = aof_sizes(stack.get("/metrics").text)
    assert info["aof_enabled"] == 1 and got["current"] > 0
    assert 0 <= got["base"] <= info["aof_current_size"]
    stack.s.redis().set(stack.prefix + "aof-grows", "x" * 100000)
    wait_for(lambda: aof_sizes(stack.get("/metrics").text)["current"] >= got["current"] + 100000,
             timeout=30, what="the current size to grow by the write")
    r.delete(stack.prefix + "aof-grows")

    # AOF off; and a Redis that refuses INFO (renamed): neither gauge, the
    # producer carries on.
    for extra in (["--appendonly", "no"], ["--appendonly", "yes", "--rename-command", "INFO", ""]):
        producer_without_aof_gauges(stack, tmp_path, extra)


def producer_without_aof_gauges(stack, tmp_path, redis_args):
    port = free_port()
    folder = tmp_path / f"redis-{port}"
    folder.mkdir()
    plain = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                              "--dir", str(folder), "--save", "", *redis_args],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    other = Stack(stack.s, folder)
    try:
        other.producer(LJ_REDIS_PORT=port, LJ_RATIO_REFRESH_MS=200)
        wait_for(lambda: 'ljwx_breaker_state{dependency="redis"} 0' in
                 other.get("/metrics").text, what="the producer on that Redis")
        time.sleep(1)   # a few refreshes
        text = other.get("/metrics").text
        assert aof_sizes(text) == {}, (redis_args, text)
    finally:
        failures = other.stop_all()
        plain.terminate()
        plain.wait(timeout=10)
    assert failures == []
