"""Chunked bodies follow RFC 9112 §7.1 strictly, whatever http-parser
tolerates (SPEC §2.3, SECURITY.md, docs/security.md): every size line, chunk
end and trailer line is checked before the parser sees it; a violation gets
400 and the connection closed, and nothing of the request is stored."""
import json
import socket
import uuid

import pytest
import requests

HEAD = (b"POST /upload_health_data_v2 HTTP/1.1\r\nHost: x\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n")
REC = b'{"a":1}'        # 7 bytes; stored if it got through, refused as no device_sn

BAD = [
    # (name, chunked body)
    ("data not followed by CRLF", b'7\r\n{"a":1}XX0\r\n\r\n'),
    ("bare LF in trailer", b"7\r\n" + REC + b"\r\n0\r\nX-T: 1\n\r\n"),
    ("bare CR after chunk size", b"7\r" + REC + b"\r\n0\r\n\r\n"),
    ("LF only after chunk size", b"7\n" + REC + b"\r\n0\r\n\r\n"),
    ("LF only after data", b"7\r\n" + REC + b"\n0\r\n\r\n"),
    ("bad hex", b"7g\r\n" + REC + b"\r\n0\r\n\r\n"),
    ("0x prefix", b"0x7\r\n" + REC + b"\r\n0\r\n\r\n"),
    ("no size", b"\r\n" + REC + b"\r\n0\r\n\r\n"),
    ("space after size, no extension", b"7 \r\n" + REC + b"\r\n0\r\n\r\n"),
    ("oversize size line", b"7;e=" + b"a" * 5000 + b"\r\n" + REC + b"\r\n0\r\n\r\n"),
    ("chunk size overflow", b"10000000000000007\r\n" + REC + b"\r\n0\r\n\r\n"),
    ("bare LF in extension", b"7;a\n=b\r\n" + REC + b"\r\n0\r\n\r\n"),
    ("extension name not a token", b"7;a@b\r\n" + REC + b"\r\n0\r\n\r\n"),
    ("unterminated quoted extension", b'7;a="b\r\n' + REC + b"\r\n0\r\n\r\n"),
    ("bare LF in trailer name", b"7\r\n" + REC + b"\r\n0\r\nX-T\n: 1\r\n\r\n"),
    ("obs-fold trailer", b"7\r\n" + REC + b"\r\n0\r\nX-T: 1\r\n 2\r\n\r\n"),
    ("space before colon in trailer", b"7\r\n" + REC + b"\r\n0\r\nX-T : 1\r\n\r\n"),
    ("trailer without colon", b"7\r\n" + REC + b"\r\n0\r\nX-T\r\n\r\n"),
    ("control byte in trailer", b"7\r\n" + REC + b"\r\n0\r\nX-T: a\x01b\r\n\r\n"),
    ("bare CR ending the trailers", b"7\r\n" + REC + b"\r\n0\r\n\rX"),
    ("trailer section too large", b"7\r\n" + REC + b"\r\n0\r\n" +
     b"".join(b"X-T%d: %s\r\n" % (i, b"v" * 1000) for i in range(10)) + b"\r\n"),
]


def exchange(stack, payload, pieces=1, wait=5.0):
    """Sends 'payload' (in 'pieces' writes), returns (answer, closed)."""
    with socket.create_connection(("127.0.0.1", stack.http_port), timeout=wait) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        step = max(1, len(payload) // pieces)
        for i in range(0, len(payload), step):
            try:
                s.sendall(payload[i:i + step])
            except OSError:
                break
        data = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return data, True
                data += chunk
        except socket.timeout:
            return data, False
        except ConnectionResetError:
            return data, True


def stored_nothing(stack):
    return (stack.s.redis().exists(stack.stream()) == 0 and
            stack.s.sql("SELECT count(*) FROM t_user_health_data WHERE device_sn LIKE 'CK%'")
            == [(0,)])


@pytest.mark.parametrize("name,body", BAD, ids=[b[0] for b in BAD])
def test_malformed_chunked_body_gets_400_and_close(stack, name, body):
    stack.producer()
    # A valid upload pipelined behind it must not be reached either.
    follow = json.dumps({"deviceSn": "CK1", "heartRate": 70}).encode()
    after = (b"POST /upload_health_data_v2 HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
             % len(follow)) + follow
    for pieces in (1, 7):      # at once, and cut across reads
        data, closed = exchange(stack, HEAD + body + after, pieces)
        assert data.startswith(b"HTTP/1.1 400 "), (name, pieces, data[:200])
        assert b"Connection: close" in data and data.count(b"HTTP/1.1 ") == 1, (name, data)
        assert b"device_sn" not in data, (name, data)      # never reached the handler
        assert closed, name
    assert stored_nothing(stack)


def test_well_formed_chunked_upload_with_trailer_and_extensions_is_stored(stack):
    stack.producer()
    sn = f"CK2-{uuid.uuid4().hex[:8]}"
    body = json.dumps({"deviceSn": sn, "heartRate": 71}).encode()
    a, b = body[:10], body[10:]
    chunked = (b"%x\r\n" % len(a) + a + b"\r\n" +
               b"%X;name=tok ; q=\"a \\\"b\\\\\";flag\r\n" % len(b) + b + b"\r\n" +
               b"000\r\nX-Checksum: abc\r\nX-Other:\tv v\r\n\r\n")
    nxt = b"GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    for pieces in (1, len(chunked)):          # at once, and one byte a write
        data, closed = exchange(stack, HEAD + chunked + nxt, pieces, wait=10)
        assert data.startswith(b"HTTP/1.1 200 "), data[:300]
        assert data.count(b"HTTP/1.1 200 ") == 2 and closed, data     # pipelined one too
    entries = stack.s.redis().xrange(stack.stream())
    assert [e[1]["device_sn"] for e in entries] == [sn, sn], entries


def test_authorization_in_a_trailer_is_ignored(stack):
    stack.producer(LJ_ADMIN_TOKEN="s3cret-admin")
    req = (b"POST /api/stream_traffic_ratio?ratio=0.5 HTTP/1.1\r\nHost: x\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n0\r\nAuthorization: Bearer s3cret-admin\r\n\r\n")
    data, _ = exchange(stack, req)
    assert data.startswith(b"HTTP/1.1 401 "), data[:200]
    assert requests.get(stack.url + "/api/stream_traffic_ratio",
                        timeout=5).json()["current_ratio"] == 0
