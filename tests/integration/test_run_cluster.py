"""`LJ_LOCAL_CLUSTER=1 make run` (scripts/run.sh): a local 3-master,
3-replica Redis Cluster in the run folder, the producer and the consumer on
it with 6 stream shards, an upload stored; stopping it stops every node."""
import os
import pathlib
import shutil
import signal
import subprocess
import tempfile

import psycopg
import redis
import requests

from conftest import TOP, free_port, wait_for
from redis_cluster import _bindable


def free_block(n=6, bus=10000):
    """A port p with p .. p+n-1 and their bus ports free."""
    for base in range(21000, 29000, 97):
        if all(_bindable(p) and _bindable(p + bus) for p in range(base, base + n)):
            return base
    raise AssertionError("no free block of cluster ports")


def node_up(port):
    try:
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=1).ping()
    except redis.exceptions.ConnectionError:
        return False


def test_local_cluster_run_stores_an_upload_and_stops_every_node():
    # Not pytest's tmp_path: the 'postgres' user must reach the run folder.
    tmp_path = pathlib.Path(tempfile.mkdtemp(prefix="ljwx-run-"))
    os.chmod(tmp_path, 0o755)
    base = free_block()
    http = free_port()
    env = dict(os.environ, LJ_RUN_DIR=str(tmp_path / "run"), LJ_LOCAL_CLUSTER="1",
               LJ_CLUSTER_PORT=str(base), LJ_PG_PORT=str(free_port()), LJ_HTTP_PORT=str(http),
               LJ_BIN_DIR=os.path.join(TOP, "build", "asan"))
    os.makedirs(env["LJ_RUN_DIR"])
    log = open(tmp_path / "run.log", "w")
    run = subprocess.Popen([os.path.join(TOP, "scripts", "run.sh")], env=env, stdout=log,
                           stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: "Ctrl-C stops" in (tmp_path / "run.log").read_text()
                 or run.poll() is not None, timeout=120, what="make run to come up")
        text = (tmp_path / "run.log").read_text()
        assert "local cluster of 6 nodes" in text and "6 stream shards" in text, text
        info = redis.Redis(host="127.0.0.1", port=base).execute_command("CLUSTER", "INFO")
        info = info.decode() if isinstance(info, bytes) else info
        assert "cluster_state:ok" in info and "cluster_size:3" in info, info
        r = requests.post(f"http://127.0.0.1:{http}/upload_health_data_v2", timeout=10,
                          json={"data": {"deviceSn": "RUN-C-1", "heartRate": 72}})
        assert r.status_code == 200, r.text
        assert r.json()["stream_id"]
        dsn = f"host=127.0.0.1 port={env['LJ_PG_PORT']} dbname=ljwx user=ljwx"

        def stored():
            with psycopg.connect(dsn) as c:
                return c.execute("SELECT heart_rate, upload_method FROM t_user_health_data"
                                 " WHERE device_sn = 'RUN-C-1'").fetchall()
        wait_for(lambda: stored() == [(72, "stream_v2")], timeout=30, what="the row")
        # The upload went to a shard's tagged stream on one of the masters.
        keys = [k for p in range(base, base + 6) if node_up(p)
                for k in redis.Redis(host="127.0.0.1", port=p).keys("health_data_stream:{*}")]
        assert keys, "no shard stream on any node"
    finally:
        # SIGTERM, as a service manager stops it: the same trap as Ctrl-C's
        # SIGINT, which a shell started in the background may not trap.
        run.send_signal(signal.SIGTERM)
        run.wait(60)
    wait_for(lambda: not any(node_up(p) for p in range(base, base + 6)), timeout=20,
             what="every cluster node to stop")
    assert "redis: local cluster stopped" in (tmp_path / "run.log").read_text()
    shutil.rmtree(tmp_path, ignore_errors=True)
