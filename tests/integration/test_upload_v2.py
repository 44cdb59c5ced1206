"""POST /upload_health_data_v2 end to end: HTTP -> Redis stream -> consumer ->
PostgreSQL, with real servers."""
import json
import re
import socket
import uuid

import redis

from conftest import wait_for

GROUP = "health_processors"


def serial(tag):
    return f"IT-{tag}-{uuid.uuid4().hex[:10]}"


def rows_for(stack, sn):
    return stack.s.sql(
        "SELECT device_sn, extract(epoch FROM ts)::bigint, heart_rate, blood_oxygen,"
        " temperature, pressure_high, pressure_low, stress, step, distance, calorie,"
        " latitude, longitude, altitude, sleep, source_method, upload_method, stream_id,"
        " batch_id FROM t_user_health_data WHERE device_sn = %s ORDER BY ts", (sn,))


def settled(stack):
    """Every entry read by the group and acknowledged (pending 0 alone holds
    before the consumer has read anything)."""
    r = stack.s.redis()
    try:
        g = [g for g in r.xinfo_groups(stack.stream()) if g["name"] == stack.prefix + GROUP]
    except redis.exceptions.ResponseError:
        return False
    return bool(g) and g[0]["pending"] == 0 and g[0]["lag"] == 0


def pending(stack):
    """Entries delivered but not acknowledged; None before the group exists."""
    r = stack.s.redis()
    try:
        return r.xpending(stack.stream(), stack.prefix + GROUP)["pending"]
    except redis.exceptions.ResponseError:
        return None


def test_one_record_is_stored_with_its_values(stack):
    stack.producer()
    stack.consumer()
    sn = serial("one")
    rec = {"deviceSn": sn, "heartRate": 72, "bloodOxygen": "98", "temperature": 36.6,
           "pressureHigh": 120, "pressureLow": 80, "stress": 30, "step": 1234,
           "distance": 900, "calorie": 55, "latitude": 22.54, "longitude": 114.05,
           "altitude": 12.5, "sleepData": {"deep": 120, "light": 200},
           "timestamp": "2024-05-01 08:00:00", "uploadMethod": "wifi"}
    resp = stack.post("/upload_health_data_v2", {"data": rec})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "accepted"
    assert body["processing"] == "async"
    assert body["accepted"] == 1 and body["rejected"] == 0 and body["errors"] == []
    stream_id = body["stream_id"]
    assert stack.s.redis().xrange(stack.stream(), stream_id, stream_id)

    rows = wait_for(lambda: rows_for(stack, sn), what="the row")
    assert rows == [(sn, 1714550400, 72, 98, 36.6, 120, 80, 30, 1234, 900, 55, 22.54, 114.05,
                     12.5, '{"deep":120,"light":200}', "wifi", "stream_v2", stream_id, None)]
    wait_for(lambda: pending(stack) == 0, what="nothing pending")


def test_batch_of_100_is_stored_once_and_acknowledged(stack):
    stack.producer()
    stack.consumer()
    sn = serial("batch")
    base = 1_700_000_000
    records = [{"device_sn": sn, "heart_rate": 60 + i % 40, "timestamp": base + i}
               for i in range(100)]
    resp = stack.post("/upload_health_data_v2", {"data": records, "batchId": "B-100"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["accepted"] == 100

    wait_for(lambda: len(rows_for(stack, sn)) == 100, what="100 rows")
    rows = rows_for(stack, sn)
    assert [r[1] for r in rows] == [base + i for i in range(100)]
    assert [r[2] for r in rows] == [60 + i % 40 for i in range(100)]
    assert {r[16] for r in rows} == {"stream_v2"}
    assert {r[18] for r in rows} == {"B-100"}
    assert {r[15] for r in rows} == {"api"}
    wait_for(lambda: pending(stack) == 0, what="nothing pending")


def test_same_reading_twice_is_stored_once(stack):
    stack.producer()
    stack.consumer()
    sn = serial("dup")
    rec = {"deviceSn": sn, "heartRate": 70, "timestamp": 1_700_000_000_000}
    assert stack.post("/upload_health_data_v2", rec).status_code == 200
    assert stack.post("/upload_health_data_v2", [rec]).status_code == 200
    wait_for(lambda: settled(stack) and stack.s.redis().xlen(stack.stream()) == 2,
             what="both entries processed")
    assert len(rows_for(stack, sn)) == 1


def test_body_that_is_not_json_gets_400_and_stores_nothing(stack):
    stack.producer()
    for body in [b"not json", b'{"data": {"deviceSn": "X"', b'{"deviceSn": "X"} trailing',
                 b'{"deviceSn":"IT-\\u0000"}', b"\xff\xfe{}"]:
        resp = stack.post("/upload_health_data_v2", body)
        assert resp.status_code == 400, body
        assert resp.json()["status"] == "error"
        assert resp.json()["message"]
    assert stack.s.redis().xlen(stack.stream()) == 0


def test_invalid_records_are_rejected_with_index_and_reason(stack):
    stack.producer()
    stack.consumer()
    sn = serial("mixed")
    records = [{"deviceSn": sn, "heartRate": 301, "timestamp": 1_700_000_000},
               {"deviceSn": sn, "heartRate": 80, "timestamp": 1_700_000_001},
               {"heartRate": 80},
               {"deviceSn": sn, "bloodOxygen": 101, "timestamp": 1_700_000_002}]
    resp = stack.post("/upload_health_data_v2", {"data": records})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["accepted"], body["rejected"]) == (1, 3)
    assert [e["index"] for e in body["errors"]] == [0, 2, 3]
    assert "heart_rate" in body["errors"][0]["reason"]
    assert "device" in body["errors"][1]["reason"]
    wait_for(lambda: pending(stack) == 0 and rows_for(stack, sn), what="the valid row")
    assert [r[1] for r in rows_for(stack, sn)] == [1_700_000_001]


def test_upload_with_no_valid_record_gets_400(stack):
    stack.producer()
    resp = stack.post("/upload_health_data_v2", {"data": [{"heartRate": 80}]})
    assert resp.status_code == 400
    body = resp.json()
    assert body["rejected"] == 1 and body["errors"][0]["index"] == 0
    assert stack.s.redis().xlen(stack.stream()) == 0


def test_unknown_path_404_and_wrong_method_405(stack):
    stack.producer()
    assert stack.post("/nope", {}).status_code == 404
    resp = __import__("requests").get(stack.url + "/upload_health_data_v2", timeout=5)
    assert resp.status_code == 405
    assert resp.headers["Allow"] == "POST"


def statuses_of(data):
    return [int(s) for s in re.findall(rb"HTTP/1\.1 (\d{3}) ", data)]


def raw_exchange(stack, payload, expect_responses):
    """Sends raw bytes and reads until 'expect_responses' responses or close."""
    with socket.create_connection(("127.0.0.1", stack.http_port), timeout=5) as s:
        s.sendall(payload)
        data = b""
        while data.count(b"HTTP/1.1 ") < expect_responses:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            data += chunk
        return data


def test_pipelined_requests_are_answered_in_order(stack):
    stack.producer()
    sns = [serial(f"pipe{i}") for i in range(3)]
    reqs = b""
    for sn in sns:
        body = json.dumps({"deviceSn": sn, "heartRate": 70}).encode()
        reqs += (b"POST /upload_health_data_v2 HTTP/1.1\r\nHost: x\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(body)) + body
    reqs += b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
    data = raw_exchange(stack, reqs, 4)
    assert statuses_of(data) == [200, 200, 200, 404]
    entries = stack.s.redis().xrange(stack.stream())
    assert [e[1]["device_sn"] for e in entries] == sns
    # Each response carries the ID of its own request's entry, in order.
    answered = re.findall(rb'"stream_id":"([0-9-]+)"', data)
    assert [i.decode() for i in answered] == [e[0] for e in entries]


def test_malformed_framing_gets_400_and_close(stack):
    stack.producer()
    cases = [
        b"POST /upload_health_data_v2 HTTP/1.1\nHost: x\nContent-Length: 2\n\n{}",   # bare LF
        b"POST /upload_health_data_v2 HTTP/1.1\r\nHost: x\r\nContent-Length : 2\r\n\r\n{}",
        b"POST /upload_health_data_v2 HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\nContent-Length: 2"
        b"\r\n\r\n{}",                                                                 # obs-fold
        b"POST /upload_health_data_v2 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",                     # CL + TE
        b"POST /upload_health_data_v2 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
        b"Content-Length: 3\r\n\r\n{}",                                                # two CL
    ]
    for raw in cases:
        data = raw_exchange(stack, raw, 1)
        assert data.startswith(b"HTTP/1.1 400 "), (raw, data)
        assert b"Connection: close" in data
    assert stack.s.redis().xlen(stack.stream()) == 0


def test_oversized_body_is_refused_before_reading(stack):
    stack.producer()
    raw = (b"POST /upload_health_data_v2 HTTP/1.1\r\nHost: x\r\n"
           b"Content-Length: 2000000\r\n\r\n")
    data = raw_exchange(stack, raw, 1)
    assert data.startswith(b"HTTP/1.1 413 ")
