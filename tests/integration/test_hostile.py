"""Hostile input (SPEC §2.3, SECURITY.md): each request gets its status and
nothing it carried is stored; SQL-looking text is stored verbatim."""
import json
import os
import uuid

import pytest
import requests

from conftest import wait_for

BASE_S = 1_750_000_000


def nothing_stored(stack):
    return stack.s.redis().exists(stack.stream()) == 0


HOSTILE = [
    # (name, body bytes, expected status)
    ("truncated JSON", b'{"data":[{"deviceSn":"H1","heartRate":7', 400),
    ("not JSON", b"<xml/>", 400),
    ("NaN literal", b'{"deviceSn":"H1","heartRate":NaN}', 400),
    ("Infinity literal", b'{"deviceSn":"H1","heartRate":Infinity}', 400),
    ("1e400", b'{"deviceSn":"H1","heartRate":1e400}', 400),
    ("huge integer", b'{"deviceSn":"H1","step":123456789012345678901234567890}', 400),
    ("NUL escape in device_sn", b'{"deviceSn":"H1\\u0000x","heartRate":70}', 400),
    ("raw NUL byte", b'{"deviceSn":"H1\x00","heartRate":70}', 400),
    ("invalid UTF-8 in device_sn", b'{"deviceSn":"H1\xc3\x28","heartRate":70}', 400),
    ("non-ASCII device_sn", '{"deviceSn":"手表","heartRate":70}'.encode(), 400),
    ("lone surrogate", b'{"deviceSn":"H1","sleep":"\\udc00"}', 400),
    ("deep nesting", b"[" * 10_000 + b"]" * 10_000, 400),
    ("object nesting in a field", b'{"deviceSn":"H1","sleep":' + b'{"a":' * 40 + b"1" +
     b"}" * 40 + b"}", 400),
    ("empty body", b"", 400),
    ("JSON string", b'"hello"', 400),
    ("empty list", b"[]", 400),
]


@pytest.mark.parametrize("name,body,status", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_body_is_refused_and_nothing_stored(stack, name, body, status):
    stack.producer()
    for path in ("/upload_health_data_v2", "/upload_health_data", "/upload_health_data_batch"):
        resp = stack.post(path, body, headers={"Content-Type": "application/json"})
        assert resp.status_code == status, (name, path, resp.text)
        assert resp.json()["status"] == "error" and resp.json()["message"]
    assert nothing_stored(stack)
    assert stack.s.sql("SELECT count(*) FROM t_user_health_data WHERE device_sn LIKE 'H1%'") \
        == [(0,)]


def test_ten_mebibyte_body_and_a_hundred_thousand_records_get_413(stack):
    stack.producer()
    big = b'{"deviceSn":"H2","sleep":"' + b"z" * (10 << 20) + b'"}'
    assert stack.post("/upload_health_data_v2", big).status_code == 413
    many = json.dumps([{"deviceSn": "H2"} for _ in range(100_000)]).encode()
    assert len(many) > (1 << 20)        # refused by size already: check the count too
    resp = stack.post("/upload_health_data_v2",
                      json.dumps([{"id": "H"} for _ in range(1001)]).encode())
    assert resp.status_code == 413 and "too many records" in resp.json()["message"]
    assert stack.post("/upload_health_data_v2", many).status_code == 413
    assert nothing_stored(stack)


def test_sql_looking_text_is_stored_verbatim(stack):
    stack.producer()
    stack.consumer()
    evil = "x'); DROP TABLE t_user_health_data; --"
    sn = f"H3-{uuid.uuid4().hex[:8]}';--"
    rec = {"deviceSn": sn, "heartRate": 70, "timestamp": BASE_S, "uploadMethod": "a';--",
           "sleepData": evil + "\t\\N\n"}
    resp = stack.post("/upload_health_data_v2", {"data": [rec], "batchId": "b';DELETE--"})
    assert resp.status_code == 200, resp.text
    got = wait_for(lambda: stack.s.sql(
        "SELECT sleep, source_method, batch_id FROM t_user_health_data WHERE device_sn = %s",
        (sn,)), what="the row")
    assert got == [(evil + "\t\\N\n", "a';--", "b';DELETE--")]
    resp = stack.post("/upload_common_event_v2", {"deviceSn": sn, "eventType": "X';--",
                                                   "note": evil})
    assert resp.status_code == 200
    wait_for(lambda: stack.s.sql("SELECT payload->>'note' FROM t_common_event"
                                 " WHERE device_sn = %s", (sn,)) == [(evil,)], what="event")


def test_slowloris_one_byte_a_second_gets_408(stack):
    import socket
    import time
    stack.producer(LJ_HEADER_TIMEOUT_MS=2000)
    request = b"POST /upload_health_data_v2 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
    with socket.create_connection(("127.0.0.1", stack.http_port), timeout=1) as s:
        t0 = time.monotonic()
        answer = b""
        for byte in request:
            try:
                s.sendall(bytes([byte]))
            except OSError:
                break
            try:
                answer += s.recv(4096)
            except socket.timeout:
                continue
            if answer:
                break
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert 1.5 < time.monotonic() - t0 < 6


HOLDER = os.path.join(os.path.dirname(__file__), "..", "hold_connections.py")


def test_twenty_thousand_idle_connections_do_not_stop_service(stack):
    import subprocess
    import sys
    stack.producer(LJ_KEEPALIVE_MS=1500)
    # Two client processes of 10,000 connections each: one process may not
    # hold 20,000 descriptors here.
    holders = [subprocess.Popen([sys.executable, HOLDER, str(stack.http_port), "10000"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
               for _ in range(2)]
    try:
        for h in holders:
            assert h.stdout.readline().strip() == "ready"
        # Idle connections are closed after the keep-alive time, those waiting
        # in the backlog are then accepted and closed in turn; service goes on.
        resp = wait_for(lambda: _try_get(stack), timeout=30, what="an answer")
        assert resp.status_code == 200
    finally:
        for h in holders:
            h.stdin.close()
            h.wait(30)


def _try_get(stack):
    try:
        return requests.get(stack.url + "/api/stream_traffic_ratio", timeout=2)
    except requests.RequestException:
        return None
