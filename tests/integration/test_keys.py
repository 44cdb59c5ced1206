"""One list of Redis key names (common/streams.h): the binaries print it
(`ljwx-consumer --print-keys`), scripts/ljwxops.py reads its names from
there, and the names it prints are the ones the binaries use in Redis."""
import json
import os
import subprocess

from conftest import BIN, TOP, wait_for


def print_keys():
    out = subprocess.run([os.path.join(BIN, "ljwx-consumer"), "--print-keys"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def ops_names(env):
    """What scripts/ljwxops.py names, run as the tools run it."""
    code = ("import json, sys; sys.path.insert(0, %r); import ljwxops as ops; "
            "print(json.dumps({k: [ops.stream(k), ops.group(k), ops.dead_stream(k)]"
            " for k in ops.kinds()} | {'dead': {f: ops.dead_field(f) for f in "
            "('reason', 'id', 'deliveries', 'consumer')}}))" % os.path.join(TOP, "scripts"))
    return subprocess.run(["/usr/bin/python3", "-c", code], env=env, capture_output=True,
                          text=True, timeout=30)


def test_the_tools_name_what_the_binaries_print(stack):
    keys = print_keys()
    out = ops_names(stack.env(LJ_BIN_DIR=BIN))
    assert out.returncode == 0, out.stdout + out.stderr
    names = json.loads(out.stdout)
    assert sorted(k for k in names if k != "dead") == ["device", "event", "health"]
    for kind, (stream, group, dead) in ((k, v) for k, v in names.items() if k != "dead"):
        assert stream == stack.prefix + keys["kinds"][kind]["stream"]
        assert group == stack.prefix + keys["kinds"][kind]["group"]
        assert dead == stack.prefix + keys["kinds"][kind]["dead"] == stream + ":dead"
    assert names["dead"] == keys["dead_fields"]


def test_the_printed_names_are_those_in_use(stack):
    keys = print_keys()
    kinds = keys["kinds"]
    r = stack.s.redis()
    stack.producer()
    stack.consumer()
    for kind in kinds.values():      # every worker made its group on its stream
        wait_for(lambda: any(g["name"] == stack.prefix + kind["group"]
                             for g in (r.xinfo_groups(stack.prefix + kind["stream"])
                                       if r.exists(stack.prefix + kind["stream"]) else [])),
                 timeout=30, what=f"group {kind['group']}")
    stats = stack.get("/api/stream_stats").json()
    assert sorted(stats["streams"]) == sorted(stack.prefix + k["stream"] for k in kinds.values())
    # an unreadable entry is dead-lettered under the printed names and fields
    r.xadd(stack.prefix + kinds["health"]["stream"],
           {"message_type": kinds["health"]["message_type"], "payload": "not json"})
    dead = stack.prefix + kinds["health"]["dead"]
    wait_for(lambda: r.xlen(dead) == 1, timeout=30, what="the dead letter")
    fields = r.xrange(dead)[0][1]
    assert set(keys["dead_fields"].values()) <= set(fields)
    counts = r.hgetall(stack.prefix + kinds["health"]["counts"])
    assert counts.get(keys["count_fields"]["dead"]) == "1"
    # the gray-release ratio is kept under the printed key
    assert stack.post("/api/stream_traffic_ratio", {"ratio": 0.25}).status_code == 200
    assert float(r.get(stack.prefix + keys["ratio_key"])) == 0.25


def test_the_tools_stop_when_no_binary_tells_the_names(stack, tmp_path):
    out = ops_names(stack.env(LJ_BIN_DIR=str(tmp_path)))
    assert out.returncode == 2
    assert "cannot read the key names" in out.stdout
    assert "LJ_BIN_DIR" in out.stdout
