"""docker-compose.yml stays valid and wired the way docs/ say (no Docker
engine here: the file is checked, not run)."""
import os
import re
import subprocess

import yaml

from conftest import BIN, TOP


def compose_config(**env):
    return subprocess.run(["docker-compose", "-f", os.path.join(TOP, "docker-compose.yml"),
                           "config"], capture_output=True, text=True,
                          env=dict(os.environ, **env))


def test_compose_file_is_valid_and_complete():
    out = compose_config(LJ_ADMIN_TOKEN="from-the-operator")
    assert out.returncode == 0, out.stderr
    cfg = yaml.safe_load(out.stdout)
    services = cfg["services"]
    assert services["producer"]["environment"]["LJ_ADMIN_TOKEN"] == "from-the-operator"
    plain = {n for n, svc in services.items() if not svc.get("profiles")}
    assert plain == {"redis", "postgres", "migrate", "producer", "consumer", "notifier"}
    assert "--appendonly yes" in " ".join(services["redis"]["command"]) or \
        "appendonly yes" in str(services["redis"]["command"])
    assert "noeviction" in str(services["redis"]["command"])
    for name in ("redis", "postgres", "producer", "consumer", "notifier"):
        assert "healthcheck" in services[name], name
    assert services["producer"]["depends_on"]["migrate"]["condition"] == \
        "service_completed_successfully"
    assert "ports" not in services["consumer"]      # scalable: no fixed host port
    assert "ports" not in services["notifier"]
    assert services["notifier"]["depends_on"]["migrate"]["condition"] == \
        "service_completed_successfully"
    assert services["producer"]["ports"][0]["target"] == 8080


def test_compose_cluster_profile_is_a_whole_cluster_and_its_clients():
    """--profile cluster: six cluster nodes announced by name, a one-shot
    that forms the cluster, a producer and a consumer on it with 6 shards,
    which start only once it is formed; nothing of it in the plain stack."""
    cfg = yaml.safe_load(compose_config(LJ_ADMIN_TOKEN="t").stdout)
    services = cfg["services"]
    cluster = {n for n, svc in services.items() if "cluster" in svc.get("profiles", [])}
    nodes = {f"redis-c{i}" for i in range(1, 7)}
    assert cluster == nodes | {"redis-cluster-init", "producer-cluster", "consumer-cluster"}
    for n in nodes:
        cmd = " ".join(services[n]["command"]) if isinstance(services[n]["command"], list) \
            else services[n]["command"]
        assert "--cluster-enabled yes" in cmd and "--cluster-announce-hostname" in cmd, n
        assert "noeviction" in cmd and "--appendonly yes" in cmd, n
        assert services[n]["hostname"] == n
    init = " ".join(services["redis-cluster-init"]["command"]) \
        if isinstance(services["redis-cluster-init"]["command"], list) \
        else services["redis-cluster-init"]["command"]
    assert "--cluster-replicas 1" in init and all(n in init or "redis-c$" in init for n in nodes)
    for name in ("producer-cluster", "consumer-cluster"):
        env = services[name]["environment"]
        seeds = {h.split(":")[0] for h in env["LJ_REDIS_CLUSTER"].split(",")}
        assert seeds <= nodes and len(seeds) >= 2, seeds
        assert env["LJ_STREAM_SHARDS"] == "6"
        assert "LJ_REDIS_HOST" not in env
        assert services[name]["depends_on"]["redis-cluster-init"]["condition"] == \
            "service_completed_successfully"
    assert services["producer-cluster"]["environment"]["LJ_ADMIN_TOKEN"] == "t"
    assert services["producer-cluster"]["ports"][0]["published"] != \
        services["producer"]["ports"][0]["published"]


def test_compose_refuses_to_start_without_an_admin_token():
    env = {k: v for k, v in os.environ.items() if k != "LJ_ADMIN_TOKEN"}
    out = subprocess.run(["docker-compose", "-f", os.path.join(TOP, "docker-compose.yml"),
                          "config"], capture_output=True, text=True, env=env)
    assert out.returncode != 0 and "LJ_ADMIN_TOKEN" in out.stderr
    empty = compose_config(LJ_ADMIN_TOKEN="")
    assert empty.returncode != 0 and "LJ_ADMIN_TOKEN" in empty.stderr


def test_systemd_producer_unit_requires_an_admin_token_from_its_env_file():
    with open(os.path.join(TOP, "deploy", "systemd", "ljwx-producer.service")) as f:
        unit = f.read()
    files = re.findall(r"^EnvironmentFile=(.*)$", unit, re.M)
    assert files and not any(p.startswith("-") for p in files), files  # missing file: no start
    assert "LJ_ADMIN_TOKEN=" not in unit                                # no secret in the unit
    check = [ln for ln in unit.splitlines() if ln.startswith("ExecStartPre=")]
    # $$: the shell reads the variable, so the token never appears in a command line.
    assert any('"$$LJ_ADMIN_TOKEN"' in ln and "exit 1" in ln for ln in check), check
    example = os.path.join(TOP, "deploy", "systemd", "ljwx.env.example")
    with open(example) as f:
        values = dict(ln.split("=", 1) for ln in f.read().splitlines()
                      if ln and not ln.startswith("#"))
    assert values["LJ_ADMIN_TOKEN"] == ""       # a placeholder, never a committed secret


def test_configuration_reference_matches_help():
    env = dict(os.environ, LJ_BIN_DIR=os.path.dirname(BIN))
    fresh = subprocess.run([os.path.join(TOP, "scripts", "config_doc.sh")], env=env,
                           capture_output=True, text=True, check=True).stdout
    with open(os.path.join(TOP, "docs", "configuration.md")) as f:
        assert f.read() == fresh, "docs/configuration.md is stale: run scripts/config_doc.sh"


def test_grafana_dashboard_uses_only_metrics_we_export(stack):
    import json
    import re

    import requests

    from conftest import free_port
    stack.producer()
    port = free_port()
    stack.consumer(LJ_STATUS_PORT=port)
    exported = requests.get(stack.url + "/metrics", timeout=5).text

    def consumer_metrics():     # complete once the first upkeep has read the streams
        try:
            text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
        except requests.RequestException:
            return ""
        return text if re.search(r"^ljwx_consumer_stream_sum\{", text, re.M) else ""
    from conftest import wait_for
    exported += wait_for(consumer_metrics, what="consumer metrics")
    names = set(re.findall(r"^([a-z_]+)(?:\{| )", exported, re.M))
    with open(os.path.join(TOP, "deploy", "grafana", "ljwx-ingest.json")) as f:
        dash = json.load(f)
    used = {m for p in dash["panels"] for t in p["targets"]
            for m in re.findall(r"\b(ljwx_[a-z_]+)", t["expr"])}
    assert used and used <= names, used - names
    # Streams in sum over their shards, and each shard on its own.
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert any("ljwx_consumer_stream_sum" in e for e in exprs)
    assert any(re.search(r"by \(stream, shard\)", e) for e in exprs)


def test_systemd_units_run_the_installed_binaries():
    for unit, binary in (("ljwx-producer.service", "ljwx-producer"),
                         ("ljwx-consumer@.service", "ljwx-consumer"),
                         ("ljwx-notifier@.service", "ljwx-notifier")):
        with open(os.path.join(TOP, "deploy", "systemd", unit)) as f:
            text = f.read()
        assert f"ExecStart=/usr/local/bin/{binary}" in text
        assert "KillSignal=SIGTERM" in text and "User=ljwx" in text
